-- spec/cluster/host.lua URLS HOST MACHINE LOG [SECONDS] - one host of the
-- cluster specs: joins the cluster, starts the shared machine and takes
-- numbers from it through its own handle, writing each acknowledged
-- number to LOG as "n N" and each refusal as "e TOKEN", until it is
-- killed or SECONDS (30) pass. A call answered later than its timeout and
-- a slack is logged as "late MS TOKEN" too (MS: how long it took; TOKEN:
-- "ok" or its refusal). "ready" goes to stdout once its machine is
-- started.
local tand = require "tand"
local urls, host, name, log = arg[1], arg[2], arg[3], arg[4]
local seconds = tonumber(arg[5]) or 30
local TIMEOUT_MS, SLACK_MS = 3000, 2000
local c = assert(tand.cluster{ servers = urls, host = host, lease_ms = 1000,
                               replicas = 3 })
local m = assert(c:start{ name = name, min_number = 1,
                          max_number = math.maxinteger })
m:settimeout(TIMEOUT_MS)
local f = assert(io.open(log, "a"))
f:setvbuf("no") -- one write a line, appended whole
io.stdout:setvbuf("no")
io.write("ready\n")
local stop = tand.now() + seconds * 1000
while tand.now() < stop do
  local t0 = tand.now()
  local n, err = m:queue_new_number()
  local took = tand.now() - t0
  if n then
    f:write(("n %d\n"):format(n))
  else
    f:write(("e %s\n"):format(err))
  end
  if took > TIMEOUT_MS + SLACK_MS then
    f:write(("late %d %s\n"):format(took, n and "ok" or err))
  end
  if err == "cluster_unavailable" then tand.sleep(10) end
end
f:close()
c:close()
