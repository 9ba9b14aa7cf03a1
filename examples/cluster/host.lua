-- examples/cluster/host.lua URLS NAME [STOPFILE] - one deli counter of a
-- cluster: it joins the NATS servers at URLS as host NAME and starts the
-- shared deli. Whichever host owns the deli runs it; this one's customers
-- take numbers from it wherever it runs, and its clerk serves the first in
-- line when more than three wait (never the last: the deli would hand the
-- highest number out again). Each line it prints says who owns the deli.
-- It stops once STOPFILE exists, or after two minutes.
-- examples/cluster/run.sh starts two of these.
local tand = require "tand"
local urls, name, stopfile = assert(arg[1], "URLS"), assert(arg[2], "NAME"),
                             arg[3]
local deadline = tand.now() + 120000

local function stopped()
  local f = stopfile and io.open(stopfile)
  if f then f:close() end
  return f ~= nil or tand.now() > deadline
end

local c = assert(tand.cluster{ servers = urls, host = name,
                               lease_ms = 1000, replicas = 3 })
-- every host starts it with the same options; one of them owns it
local deli = assert(c:start{ name = "deli", min_number = 1,
                             max_number = 999999 })
deli:settimeout(3000) -- a call in flight when the owner dies ends then
io.stdout:setvbuf("line")

while not stopped() do
  local n, err = deli:queue_new_number()
  local owner = deli:owner() or "nobody"
  if n then
    print(("%s: took %d (deli on %s)"):format(name, n, owner))
  else -- timeout or not_owner while the deli changes hands
    print(("%s: no number: %s (deli on %s)"):format(name, err, owner))
  end
  local state = deli:report_state()
  if state and #state.queue > 3 then
    n = deli:serve_next_queued_number()
    if n then print(("%s: served %d"):format(name, n)) end
  end
  tand.sleep(50)
end
c:close() -- the deli's last batch is in its stream: another host goes on
print(name .. ": closed")
