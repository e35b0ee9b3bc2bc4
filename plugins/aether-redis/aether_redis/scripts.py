"""The Lua scripts. Redis runs each script atomically, so a commit's checks and writes
cannot interleave with another node's, and a read sees one consistent state.

Keys (all under one hash tag, see :class:`~aether_redis.storage.Keys`):

``meta``   hash: ``revision``, ``applied``, ``compacted``
``rec``    hash: revision → the record's JSON
``ver``    hash: ``kind NUL name NUL version`` → revision
``head``   hash: ``kind NUL name`` → latest version (tombstones included)
``names``  sorted set, all scores 0: ``kind NUL name`` of every live document
``feed``   stream: one entry ``<last revision>-0`` per commit that wrote records
``tok:*``  string: a commit's outcome, kept ``commit_token_ttl`` seconds

A script is not rolled back when a command inside fails, so the commit script does
the one write that can fail on bad state (``XADD`` with an explicit id) before any
other write.
"""

from __future__ import annotations

# Chunked HMGET: Lua's unpack() is limited to a few thousand values.
_MGET = """
local function mget(key, fields)
  local out = {}
  for i = 1, #fields, 1000 do
    local chunk = {}
    for j = i, math.min(i + 999, #fields) do chunk[#chunk + 1] = fields[j] end
    local got = redis.call('HMGET', key, unpack(chunk))
    for j = 1, #got do out[#out + 1] = got[j] end
  end
  return out
end
local function int(n) return string.format('%d', n) end
"""

#: KEYS meta rec ver head names feed tok
#: ARGV token_ttl log_index|"" stream_maxlen n, then per write: doc expected deleted body
#: Returns "replayed" | "conflict:<i>:<current>" | "ok:<first revision>".
COMMIT = _MGET + """
local meta, rec, ver, head, names, feed, tok =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local done = redis.call('GET', tok)
if done then return done end
local log_index = ARGV[2]
local n = tonumber(ARGV[4])
local result
if log_index ~= '' and
   tonumber(log_index) <= tonumber(redis.call('HGET', meta, 'applied') or '0') then
  result = 'replayed'
else
  for i = 0, n - 1 do
    local b = 5 + i * 4
    local current = tonumber(redis.call('HGET', head, ARGV[b]) or '0')
    if current ~= tonumber(ARGV[b + 1]) then
      result = 'conflict:' .. i .. ':' .. int(current)
      break
    end
  end
  local first = tonumber(redis.call('HGET', meta, 'revision') or '0') + 1
  if not result and n > 0 then
    local last = int(first + n - 1)
    redis.call('XADD', feed, 'MAXLEN', '~', ARGV[3], last .. '-0',
               'first', int(first), 'last', last)
    for i = 0, n - 1 do
      local b = 5 + i * 4
      local r = int(first + i)
      local version = int(tonumber(ARGV[b + 1]) + 1)
      redis.call('HSET', rec, r, ARGV[b + 3] .. ',"revision":' .. r .. '}')
      redis.call('HSET', ver, ARGV[b] .. '\\0' .. version, r)
      redis.call('HSET', head, ARGV[b], version)
      if ARGV[b + 2] == '1' then
        redis.call('ZREM', names, ARGV[b])
      else
        redis.call('ZADD', names, 0, ARGV[b])
      end
    end
    redis.call('HSET', meta, 'revision', last)
  end
  if log_index ~= '' then redis.call('HSET', meta, 'applied', log_index) end
  if not result then result = 'ok:' .. int(first) end
end
redis.call('SET', tok, result, 'EX', ARGV[1])
return result
"""

#: KEYS rec ver head; ARGV doc version|"". Returns the record JSON or nil.
GET = """
local v = ARGV[2]
if v == '' then
  v = redis.call('HGET', KEYS[3], ARGV[1])
  if not v then return false end
end
local r = redis.call('HGET', KEYS[2], ARGV[1] .. '\\0' .. v)
if not r then return false end
return redis.call('HGET', KEYS[1], r)
"""

#: KEYS rec ver head; ARGV doc. Every version's JSON, oldest first.
HISTORY = _MGET + """
local top = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
if top == 0 then return {} end
local fields = {}
for v = 1, top do fields[v] = ARGV[1] .. '\\0' .. int(v) end
return mget(KEYS[1], mget(KEYS[2], fields))
"""

#: KEYS rec ver head names; ARGV min max limit (ZRANGEBYLEX bounds).
HEADS = _MGET + """
local docs = redis.call('ZRANGEBYLEX', KEYS[4], ARGV[1], ARGV[2], 'LIMIT', 0, ARGV[3])
if #docs == 0 then return {} end
local versions = mget(KEYS[3], docs)
local fields = {}
for i = 1, #docs do fields[i] = docs[i] .. '\\0' .. versions[i] end
return mget(KEYS[1], mget(KEYS[2], fields))
"""

#: KEYS meta rec; ARGV revision limit. Records after ``revision``, in order.
SINCE = _MGET + """
local top = tonumber(redis.call('HGET', KEYS[1], 'revision') or '0')
local from = math.max(tonumber(ARGV[1]), 0) + 1
local to = math.min(top, from - 1 + tonumber(ARGV[2]))
if to < from then return {} end
local fields = {}
for r = from, to do fields[#fields + 1] = int(r) end
return mget(KEYS[2], fields)
"""

#: KEYS meta; ARGV revision. The compaction mark only moves forward, never past the top.
COMPACT = _MGET + """
local top = tonumber(redis.call('HGET', KEYS[1], 'revision') or '0')
local now = tonumber(redis.call('HGET', KEYS[1], 'compacted') or '0')
local target = math.max(now, math.min(tonumber(ARGV[1]), top))
redis.call('HSET', KEYS[1], 'compacted', int(target))
return target
"""

#: KEYS live keys 1..k, then their staging keys k+1..2k. Renames each staging key over
#: its live key (or deletes the live key when the staging one is empty), atomically.
SWAP = """
local k = #KEYS / 2
for i = 1, k do
  local live, staged = KEYS[i], KEYS[k + i]
  if redis.call('EXISTS', staged) == 1 then
    redis.call('RENAME', staged, live)
    redis.call('PERSIST', live)
  else
    redis.call('DEL', live)
  end
end
return k
"""
