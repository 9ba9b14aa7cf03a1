-- examples/deli.lua - a deli counter: customers on their own threads take
-- numbers from one ticket machine while a clerk serves them in order.
-- Run with ./scripts/demo, or after a build: build/tand examples/deli.lua
-- (or scripts/lua examples/deli.lua, lua5.4 with the build on its paths).
local tand = require "tand"

local CUSTOMERS, VISITS = 4, 3

local deli = assert(tand.start{ min_number = 1, max_number = 99,
                                name = "deli" })

-- Each customer is a thread with its own Lua state: it finds the machine
-- by name, takes a number a few times, and reports what it got.
local customers = {}
for c = 1, CUSTOMERS do
  customers[c] = tand.spawn(function(name, visits)
    local tand = require "tand"
    local machine = assert(tand.whereis("deli"))
    local tickets = {}
    for v = 1, visits do
      tickets[v] = assert(machine:queue_new_number())
      tand.sleep(1 + (#name * v) % 3)
    end
    return name, tickets
  end, "customer " .. c, VISITS)
end

-- The clerk serves whoever is first; a VIP gets priority once.
local served, vip_done = {}, false
local deadline = tand.now() + 10000
while #served < CUSTOMERS * VISITS and tand.now() < deadline do
  local queue = deli:report_state().queue
  local n
  if not vip_done and #queue >= 3 then
    n = deli:serve_next_queued_number(queue[3]) -- the VIP holds the third
    vip_done = true
    print(("clerk: VIP first, serving %d"):format(n))
  else
    n = deli:serve_next_queued_number()
    if n then print(("clerk: now serving %d"):format(n)) end
  end
  if n then served[#served + 1] = n else tand.sleep(1) end
end

local issued = 0
for c = 1, CUSTOMERS do
  local name, tickets = assert(customers[c]:join(10000))
  print(("%s took %s"):format(name, table.concat(tickets, ", ")))
  issued = issued + #tickets
end

local state = deli:report_state()
print(("served %d of %d tickets; still queued: {%s}; range %d..%d")
      :format(#served, issued, table.concat(state.queue, ", "),
              state.min_number, state.max_number))
assert(#served + #state.queue == issued, "a ticket was lost")
deli:stop()
