-- wrk: PUT /configs/cfg-NNNNN with {"value": {...}} (~200 B, the body Aether's admin API and
-- admin_bench.py's bare app both take), JWT bearer, cycling over BENCH_NKEYS names.
local C = dofile(os.getenv("BENCH_LUA_COMMON") or error("BENCH_LUA_COMMON not set"))
C.install_setup(); C.install_done()
local paths, bodies, n, i = {}, {}, 0, 0
function init(args)
  local tok = os.getenv("BENCH_JWT") or error("BENCH_JWT not set")
  for k = 0, C.NKEYS - 1 do
    paths[k] = string.format("/configs/cfg-%05d", k)
    bodies[k] = string.format(
      '{"value":{"name":"cfg-%05d","version":%d,"owner":"team-bench","enabled":true,"replicas":3,"data":"%s"}}',
      k, k, string.rep("y", 100))
  end
  n = C.NKEYS
  i = ((tid or 0) * 7919) % n
  wrk.method = "PUT"
  wrk.headers["Authorization"] = "Bearer " .. tok
  wrk.headers["Content-Type"] = "application/json"
end
function request()
  i = (i + 1) % n
  return wrk.format(nil, paths[i], nil, bodies[i])
end
