-- wrk: GET /configs/cfg-NNNNN with "Authorization: Bearer $BENCH_JWT", cycling over BENCH_NKEYS
-- names; the RESULT line comes from the shared common.lua (BENCH_LUA_COMMON, its path).
local C = dofile(os.getenv("BENCH_LUA_COMMON") or error("BENCH_LUA_COMMON not set"))
C.install_setup(); C.install_done()
local paths, n, i = {}, 0, 0
function init(args)
  local tok = os.getenv("BENCH_JWT") or error("BENCH_JWT not set")
  for k = 0, C.NKEYS - 1 do paths[k] = string.format("/configs/cfg-%05d", k) end
  n = C.NKEYS
  i = ((tid or 0) * 7919) % n
  wrk.method = "GET"
  wrk.headers["Authorization"] = "Bearer " .. tok
end
function request()
  i = (i + 1) % n
  return wrk.format(nil, paths[i])
end
