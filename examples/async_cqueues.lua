-- examples/async_cqueues.lua - coroutines that await tand requests in a
-- cqueues loop.
--
-- Each of six coroutines asks a slow server a question and awaits the
-- answer with cqueues.poll(request): a request speaks cqueues' poll
-- protocol (pollfd, events, timeout), so only that coroutine waits, and a
-- ticker coroutine keeps running meanwhile. Run by the tests (it fails if
-- the ticker stopped while the requests were in flight):
--   scripts/lua examples/async_cqueues.lua    (needs Debian's lua-cqueues)
local cqueues = require "cqueues"
local tand = require "tand"

local server = assert(tand.start{ min_number = 1, max_number = 1000,
  policy = function()
    return { handle_call = function(request)
      require("tand").sleep(40) -- a stand-in for real work
      return "hello, " .. request[2]
    end }
  end })

-- Suspends this coroutine, not the thread, until r has its reply.
local function await(r)
  while not r:ready() do cqueues.poll(r) end
  return r:wait()
end

local cq = cqueues.new()
local ticks, done, t0 = 0, 0, cqueues.monotime()
for i = 1, 6 do
  cq:wrap(function()
    local answer = assert(await(assert(server:send_request("greet", i))))
    assert(answer == "hello, " .. i)
    done = done + 1
  end)
end
cq:wrap(function()
  while done < 6 do
    ticks = ticks + 1
    cqueues.sleep(0.005)
  end
end)
assert(cq:loop())

local ms = math.floor((cqueues.monotime() - t0) * 1000)
print(("6 answers in %d ms; the ticker ran %d times meanwhile"):format(ms, ticks))
assert(done == 6)
-- six 40 ms answers from one server take >= 240 ms: a ticker that was
-- never blocked ran about every 5 ms of it
assert(ticks >= ms // 5 // 2, "the ticker stopped during the waits")
server:stop()
