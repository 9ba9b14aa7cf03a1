-- spec/journal/taker.lua JOURNAL THREADS - takes numbers from a journaled
-- machine as fast as THREADS threads can, printing each acknowledged
-- number on its own line, until it is killed (or 20 s pass).
local tand = require "tand"
local journal, threads = arg[1], tonumber(arg[2]) or 4
local m = assert(tand.start{ min_number = 1, max_number = math.maxinteger,
                             journal = journal })
io.stdout:setvbuf("no")
io.write("ready\n")
local ts = {}
for i = 1, threads do
  ts[i] = tand.spawn(function(h)
    local tand = require "tand"
    local stop = tand.now() + 20000
    io.stdout:setvbuf("no")
    while tand.now() < stop do
      local n = assert(h:queue_new_number())
      io.write(n .. "\n") -- one write: lines from threads do not mix
    end
  end, m)
end
for i = 1, threads do ts[i]:join() end
