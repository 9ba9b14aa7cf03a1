-- spec/journal/reloader.lua JOURNAL DIR - a journaled policy server
-- (DIR/even.lua, swapped with DIR/odd.lua by m:reload as fast as it
-- goes) from which 3 threads take numbers. Prints each acknowledged
-- number as "n N" and each acknowledged reload as "reload G" (G: the
-- reloads done, which code_change counts in the state), until it is
-- killed (or 20 s pass).
local tand = require "tand"
local journal, dir = arg[1], arg[2]
local m = assert(tand.start{ min_number = 1, max_number = math.maxinteger,
                             journal = journal, policy = dir .. "/even.lua" })
io.stdout:setvbuf("no")
io.write("ready\n")
local ts = {}
for i = 1, 3 do
  ts[i] = tand.spawn(function(h)
    local tand = require "tand"
    local stop = tand.now() + 20000
    io.stdout:setvbuf("no")
    while tand.now() < stop do
      io.write("n " .. assert(h:call("take")) .. "\n")
    end
  end, m)
end
local stop, files = tand.now() + 20000, { dir .. "/odd.lua", dir .. "/even.lua" }
local g = select(2, m:call("state"))
while tand.now() < stop do
  assert(m:reload(files[g % 2 + 1]))
  g = g + 1
  io.write("reload " .. g .. "\n")
  tand.sleep(5)
end
