-- wrk script for bench/ingest_fastapi.sh: rotates through the request paths listed one a line in
-- the file named after `--` (wrk ... -s bench/footfall_paths.lua URL -- PATHS_FILE), every thread
-- from its own offset. Requests are formatted once, in init, so wrk spends its CPU on sending.
local threads = 0

function setup(thread)
  thread:set("offset", threads)
  threads = threads + 1
end

local requests, i = {}, 0

function init(args)
  for path in io.lines(args[1]) do
    requests[#requests + 1] = wrk.format("GET", path)
  end
  assert(#requests > 0, "no request paths in " .. tostring(args[1]))
  i = (offset or 0) * 7919 % #requests
end

function request()
  i = i % #requests + 1
  return requests[i]
end
