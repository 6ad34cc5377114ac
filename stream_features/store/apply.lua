-- Apply events to customers' state, atomically per call, in stream order.
-- Mirrors stream_features/customer_state.py step by step (too_late, dedup, tile add, attributes).
--
-- KEYS: for each customer, its tiles hash then its aux hash (same hash slot: "{...}" tag).
-- ARGV[1] retention_tiles, ARGV[2] dedup_horizon_seconds, ARGV[3] key_ttl_seconds (0 = none),
-- then per customer (in KEYS order): the event count n, then n groups of 9 values:
--   offset_field, offset, ts, tile, event_id ("" = none), kind, x, y, z
--   kind P: x=amount | S: x=duration_seconds, y=device (percent-encoded) | C: x="1" converted/"0",
--   y=value or "" | T: x=response_time_hours or "", y="1" escalated/"0" | A: x=attributes as
--   repeated "<len>:<key><len>:<json>".
-- Returns one character per event: a applied, d duplicate, l too_late, s already applied
-- (offset at or below the customer's recorded offset), L already applied and was too_late.

local R = tonumber(ARGV[1])
local H = tonumber(ARGV[2])
local TTL = tonumber(ARGV[3])
local PRUNE_INTERVAL = 3600
local REJECT_MEMORY = 32
local SCALARS = {'n', 'pc', 'ps', 'pt', 'sc', 'sd', 'cc', 'ca', 'cav', 'tc', 'rs', 'rn', 'te'}

local function fmt(x)
  for _, p in ipairs({'%.15g', '%.16g'}) do
    local s = string.format(p, x)
    if tonumber(s) == x then return s end
  end
  return string.format('%.17g', x)
end

local function parse_tile(text)
  local t = {dev = {}, order = {}}
  for _, k in ipairs(SCALARS) do t[k] = 0 end
  t.pt = nil
  if text then
    for k, v in string.gmatch(text, '(%S+)=(%S+)') do
      if string.sub(k, 1, 2) == 'd:' then
        local name = string.sub(k, 3)
        t.dev[name] = tonumber(v)
        t.order[#t.order + 1] = name
      else
        t[k] = tonumber(v)
      end
    end
  end
  return t
end

local function encode_tile(t)
  local parts = {}
  for _, k in ipairs(SCALARS) do
    local v = t[k]
    if k == 'pt' then
      if t.pc > 0 then parts[#parts + 1] = 'pt=' .. fmt(v) end
    elseif v ~= 0 then
      parts[#parts + 1] = k .. '=' .. fmt(v)
    end
  end
  for _, name in ipairs(t.order) do parts[#parts + 1] = 'd:' .. name .. '=' .. fmt(t.dev[name]) end
  return table.concat(parts, ' ')
end

local function add_event(t, kind, ts, x, y)
  t.n = t.n + 1
  if kind == 'P' then
    t.pc = t.pc + 1
    t.ps = t.ps + tonumber(x)
    if t.pt == nil or ts > t.pt then t.pt = ts end
  elseif kind == 'S' then
    t.sc = t.sc + 1
    t.sd = t.sd + tonumber(x)
    if t.dev[y] == nil then t.dev[y] = 0; t.order[#t.order + 1] = y end
    t.dev[y] = t.dev[y] + 1
  elseif kind == 'C' then
    if x == '1' then
      t.cc = t.cc + 1
    else
      t.ca = t.ca + 1
      if y ~= '' then t.cav = t.cav + tonumber(y) end
    end
  elseif kind == 'T' then
    t.tc = t.tc + 1
    if x ~= '' then t.rs = t.rs + tonumber(x); t.rn = t.rn + 1 end
    if y == '1' then t.te = t.te + 1 end
  end
end

local function merge_attributes(main, ts, packed)
  local pos = 1
  while pos <= #packed do
    local colon = string.find(packed, ':', pos, true)
    local klen = tonumber(string.sub(packed, pos, colon - 1))
    local key = string.sub(packed, colon + 1, colon + klen)
    pos = colon + klen + 1
    colon = string.find(packed, ':', pos, true)
    local vlen = tonumber(string.sub(packed, pos, colon - 1))
    local value = string.sub(packed, colon + 1, colon + vlen)
    pos = colon + vlen + 1
    local field = 'a:' .. key
    local current = redis.call('HGET', main, field)
    local current_ts = nil  -- HGET of a missing field gives false, not nil
    if current then current_ts = tonumber(string.sub(current, 1, string.find(current, ' ', 1, true) - 1)) end
    if current_ts == nil or ts >= current_ts then
      redis.call('HSET', main, field, fmt(ts) .. ' ' .. value)
    end
  end
end

local function prune(main, aux, nt, nts)
  local horizon_floor = nts - H
  local aux_fields = redis.call('HKEYS', aux)
  for _, f in ipairs(aux_fields) do
    if string.sub(f, 1, 2) == 'e:' then
      local seen = tonumber(redis.call('HGET', aux, f))
      if seen and seen < horizon_floor then redis.call('HDEL', aux, f) end
    end
  end
  local oldest_kept = nt - R
  for _, f in ipairs(redis.call('HKEYS', main)) do
    if string.sub(f, 1, 2) == 't:' and tonumber(string.sub(f, 3)) <= oldest_kept then
      redis.call('HDEL', main, f)
    end
  end
end

local function remember_reject(aux, ofield, offset)
  local field = 'j' .. string.sub(ofield, 2)
  local list = redis.call('HGET', aux, field) or ''
  local kept = {}
  for o in string.gmatch(list, '%S+') do kept[#kept + 1] = o end
  kept[#kept + 1] = tostring(offset)
  while #kept > REJECT_MEMORY do table.remove(kept, 1) end
  redis.call('HSET', aux, field, table.concat(kept, ' '))
end

local function was_rejected(aux, ofield, offset)
  local list = redis.call('HGET', aux, 'j' .. string.sub(ofield, 2))
  if not list then return false end
  for o in string.gmatch(list, '%S+') do
    if tonumber(o) == offset then return true end
  end
  return false
end

local out = {}
local argi = 4
for c = 1, #KEYS, 2 do
  local main, aux = KEYS[c], KEYS[c + 1]
  local count = tonumber(ARGV[argi])
  argi = argi + 1
  local nt = tonumber(redis.call('HGET', aux, 'nt'))
  local nts = tonumber(redis.call('HGET', aux, 'nts'))
  local np = tonumber(redis.call('HGET', aux, 'np')) or -math.huge
  local offsets, offsets_dirty = {}, {}
  local tiles = {}
  local applied = false
  for _ = 1, count do
    local ofield, offset = ARGV[argi], tonumber(ARGV[argi + 1])
    local ts, tile = tonumber(ARGV[argi + 2]), tonumber(ARGV[argi + 3])
    local eid, kind, x, y = ARGV[argi + 4], ARGV[argi + 5], ARGV[argi + 6], ARGV[argi + 7]
    argi = argi + 9
    local last = offsets[ofield]
    if last == nil then
      last = tonumber(redis.call('HGET', aux, ofield)) or -1
      offsets[ofield] = last
    end
    if offset <= last then
      out[#out + 1] = was_rejected(aux, ofield, offset) and 'L' or 's'
    else
      offsets[ofield] = offset
      offsets_dirty[ofield] = true
      if nt ~= nil and tile <= nt - R then
        out[#out + 1] = 'l'
        remember_reject(aux, ofield, offset)
      else
        local duplicate = false
        if eid ~= '' then
          local seen = tonumber(redis.call('HGET', aux, 'e:' .. eid))
          if seen ~= nil and (nts == nil or seen >= nts - H) then
            duplicate = true
          else
            redis.call('HSET', aux, 'e:' .. eid, fmt(ts))
          end
        end
        if duplicate then
          out[#out + 1] = 'd'
        else
          local field = 't:' .. string.format('%d', tile)
          local t = tiles[field]
          if t == nil then
            t = parse_tile(redis.call('HGET', main, field))
            tiles[field] = t
          end
          add_event(t, kind, ts, x, y)
          if kind == 'A' then merge_attributes(main, ts, x) end
          if nts == nil or ts > nts then nts = ts end
          if nt == nil or tile > nt then nt = tile end
          applied = true
          out[#out + 1] = 'a'
        end
      end
    end
  end
  if applied then
    -- HSET in chunks: unpack() of a whole replayed year would overflow Lua's C stack.
    local fields = {}
    for field, t in pairs(tiles) do
      fields[#fields + 1] = field
      fields[#fields + 1] = encode_tile(t)
      if #fields >= 512 then redis.call('HSET', main, unpack(fields)); fields = {} end
    end
    if #fields > 0 then redis.call('HSET', main, unpack(fields)) end
    redis.call('HSET', aux, 'nt', string.format('%d', nt), 'nts', fmt(nts))
    if nts >= np then
      prune(main, aux, nt, nts)
      redis.call('HSET', aux, 'np', fmt(nts + PRUNE_INTERVAL))
    end
    if TTL > 0 then
      redis.call('EXPIRE', main, TTL)
      redis.call('EXPIRE', aux, TTL)
    end
  end
  for ofield, _ in pairs(offsets_dirty) do
    redis.call('HSET', aux, ofield, string.format('%d', offsets[ofield]))
  end
end
return table.concat(out)
