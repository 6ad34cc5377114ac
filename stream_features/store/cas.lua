-- Compare-and-set of customers' hashes: the consumer computed the new state in Python
-- (customer_state.py) from the version it read; this writes the changed fields only if nobody
-- wrote the customer since. Atomic per call; Redis does no parsing of the state itself.
--
-- KEYS: per customer, its tiles hash then its bookkeeping hash (one hash slot: "{...}" tag).
-- ARGV[1]: key TTL in seconds (0 = none). Then per customer, in KEYS order:
--   a header "<expected version> <new version> <refresh TTL 0|1> <a> <b> <c> <d>" (expected 0: new
--   customer),
--   the bookkeeping "m" value, then four lists of a, b, c, d arguments: tiles-hash field/value
--   pairs to set, tiles-hash fields to delete, bookkeeping field/value pairs to set, bookkeeping
--   fields to delete.
-- Returns one character per customer: "1" written, "0" version mismatch (nothing written).
--
-- Shaped for speed: this runs once per customer per batch; the common case is three calls (HGET,
-- HSET, HSET). Numbers that are only passed on stay strings (a Lua number given to redis.call is
-- formatted with printf on every call).

local TTL = ARGV[1]
local CHUNK = 1000  -- unpack() of a very long list would overflow Lua's C stack

local function call_range(command, key, first, count)
  local last = first + count - 1
  for start = first, last, CHUNK do
    redis.call(command, key, unpack(ARGV, start, math.min(start + CHUNK - 1, last)))
  end
end

local out = {}
local i = 2
for c = 1, #KEYS, 2 do
  local main, aux = KEYS[c], KEYS[c + 1]
  local expected, version, refresh, a, b, d, e =
    string.match(ARGV[i], '^(%d+) (%d+) ([01]) (%d+) (%d+) (%d+) (%d+)$')
  local n_main_set, n_main_del, n_aux_set, n_aux_del = tonumber(a), tonumber(b), tonumber(d), tonumber(e)
  local meta = ARGV[i + 1]
  local p = i + 2
  i = p + n_main_set + n_main_del + n_aux_set + n_aux_del
  if (redis.call('HGET', aux, 'v') or '0') ~= expected then
    out[#out + 1] = '0'
  else
    if n_main_set > 0 then call_range('HSET', main, p, n_main_set) end
    p = p + n_main_set
    if n_main_del > 0 then call_range('HDEL', main, p, n_main_del) end
    p = p + n_main_del
    if n_aux_set <= CHUNK then
      redis.call('HSET', aux, 'v', version, 'm', meta, unpack(ARGV, p, p + n_aux_set - 1))
    else
      redis.call('HSET', aux, 'v', version, 'm', meta)
      call_range('HSET', aux, p, n_aux_set)
    end
    p = p + n_aux_set
    if n_aux_del > 0 then call_range('HDEL', aux, p, n_aux_del) end
    if refresh == '1' and TTL ~= '0' then
      redis.call('EXPIRE', main, TTL)
      redis.call('EXPIRE', aux, TTL)
    end
    out[#out + 1] = '1'
  end
end
return table.concat(out)
