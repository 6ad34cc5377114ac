-- Compare-and-set of customers' hashes: the consumer computed the new state in Python
-- (customer_state.py) from the version it read; this writes the changed fields only if nobody
-- wrote the customer since. Atomic per call; Redis does no parsing of the state itself.
--
-- KEYS: per customer, its tiles hash then its bookkeeping hash (one hash slot: "{...}" tag).
-- ARGV[1]: key TTL in seconds (0 = none). Then per customer, in KEYS order:
--   expected version, refresh TTL ("1"/"0"), then the counts of four lists and the lists:
--   tiles-hash field/value pairs to set, tiles-hash fields to delete,
--   bookkeeping field/value pairs to set, bookkeeping fields to delete.
-- Returns one character per customer: "1" written, "0" version mismatch (nothing written).

local TTL = tonumber(ARGV[1])
local CHUNK = 1000  -- unpack() of a very long list would overflow Lua's C stack

local function call_range(command, key, first, last)
  for start = first, last, CHUNK do
    redis.call(command, key, unpack(ARGV, start, math.min(start + CHUNK - 1, last)))
  end
end

local out = {}
local i = 2
for c = 1, #KEYS / 2 do
  local main, aux = KEYS[2 * c - 1], KEYS[2 * c]
  local expected, refresh = tonumber(ARGV[i]), ARGV[i + 1]
  local n_main_set, n_main_del = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local n_aux_set, n_aux_del = tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5])
  local first = i + 6
  i = first + n_main_set + n_main_del + n_aux_set + n_aux_del
  local current = tonumber(redis.call('HGET', aux, 'v')) or 0
  if current ~= expected then
    out[#out + 1] = '0'
  else
    local p = first
    call_range('HSET', main, p, p + n_main_set - 1); p = p + n_main_set
    call_range('HDEL', main, p, p + n_main_del - 1); p = p + n_main_del
    call_range('HSET', aux, p, p + n_aux_set - 1); p = p + n_aux_set
    call_range('HDEL', aux, p, p + n_aux_del - 1)
    redis.call('HSET', aux, 'v', string.format('%d', current + 1))
    if refresh == '1' and TTL > 0 then
      redis.call('EXPIRE', main, TTL)
      redis.call('EXPIRE', aux, TTL)
    end
    out[#out + 1] = '1'
  end
end
return table.concat(out)
