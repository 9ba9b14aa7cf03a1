-- spec/cluster/host.lua URLS HOST MACHINE LOG [SECONDS] - one host of the
-- cluster specs: joins the cluster, starts the shared machine and takes
-- numbers from it through its own handle, writing each acknowledged
-- number to LOG as "n N" and each refusal as "e TOKEN", until it is
-- killed or SECONDS (30) pass. "ready" goes to stdout once its machine is
-- started.
local tand = require "tand"
local urls, host, name, log = arg[1], arg[2], arg[3], arg[4]
local seconds = tonumber(arg[5]) or 30
local c = assert(tand.cluster{ servers = urls, host = host, lease_ms = 1000,
                               replicas = 3 })
local m = assert(c:start{ name = name, min_number = 1,
                          max_number = math.maxinteger })
m:settimeout(3000)
local f = assert(io.open(log, "a"))
f:setvbuf("no") -- one write a line, appended whole
io.stdout:setvbuf("no")
io.write("ready\n")
local stop = tand.now() + seconds * 1000
while tand.now() < stop do
  local n, err = m:queue_new_number()
  if n then
    f:write(("n %d\n"):format(n))
  else
    f:write(("e %s\n"):format(err))
    if err == "cluster_unavailable" then tand.sleep(10) end
  end
end
f:close()
c:close()
