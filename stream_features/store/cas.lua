-- Compare-and-set of customers' hashes: the consumer computed the new state in Python
-- (customer_state.py) from the version it read; this applies the changed fields only if nobody
-- wrote the customer since. Atomic per call; Redis does no parsing of the state itself.
--
-- KEYS: per customer, its tiles hash then its bookkeeping hash (one hash slot: "{...}" tag).
-- ARGV[1] key TTL in seconds (0 = none); ARGV[1 + c]: the c-th customer's payload, little-endian:
--   d expected version, B refresh TTL (0/1),
--   then four sections, each I4 count followed by its items, every string as I4 length + bytes:
--   tiles-hash sets (field, value), tiles-hash deletes (field), bookkeeping sets (field, value),
--   bookkeeping deletes (field).
-- Returns one character per customer: "1" written, "0" version mismatch (nothing written).

local TTL = tonumber(ARGV[1])
local unpack_bin = struct.unpack

local function read_strings(payload, pos, per_item)
  local count
  count, pos = unpack_bin('<I4', payload, pos)
  local items = {}
  for _ = 1, count * per_item do
    local s
    s, pos = unpack_bin('<I4c0', payload, pos)
    items[#items + 1] = s
  end
  return items, pos
end

-- unpack() of a long list would overflow Lua's C stack: write in chunks.
local function chunked(command, key, items, step)
  local chunk = {}
  for i = 1, #items do
    chunk[#chunk + 1] = items[i]
    if #chunk >= 512 * step then redis.call(command, key, unpack(chunk)); chunk = {} end
  end
  if #chunk > 0 then redis.call(command, key, unpack(chunk)) end
end

local out = {}
for c = 1, #KEYS / 2 do
  local main, aux = KEYS[2 * c - 1], KEYS[2 * c]
  local payload = ARGV[1 + c]
  local expected, refresh_ttl, pos = unpack_bin('<dB', payload)
  local current = tonumber(redis.call('HGET', aux, 'v')) or 0
  if current ~= expected then
    out[#out + 1] = '0'
  else
    local main_set, main_del, aux_set, aux_del
    main_set, pos = read_strings(payload, pos, 2)
    main_del, pos = read_strings(payload, pos, 1)
    aux_set, pos = read_strings(payload, pos, 2)
    aux_del, pos = read_strings(payload, pos, 1)
    chunked('HSET', main, main_set, 2)
    chunked('HDEL', main, main_del, 1)
    aux_set[#aux_set + 1] = 'v'
    aux_set[#aux_set + 1] = string.format('%d', current + 1)
    chunked('HSET', aux, aux_set, 2)
    chunked('HDEL', aux, aux_del, 1)
    if refresh_ttl == 1 and TTL > 0 then
      redis.call('EXPIRE', main, TTL)
      redis.call('EXPIRE', aux, TTL)
    end
    out[#out + 1] = '1'
  end
end
return table.concat(out)
