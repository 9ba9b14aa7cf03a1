-- Who runs a server, as the Lua API meets it: a caller that finds a
-- machine free runs it on its own thread, and the promises hold whoever
-- runs what.
local tand = require "tand"

-- A policy that relays: "ask" with another machine makes that machine
-- call back ("back") with this one's handle; "back" calls the handle it
-- was given, which waits for it, so the call must fail at once.
local function relay()
  return { handle_call = function(r, from, state, machine)
    if r[1] == "ask" then
      return r[2]:call("back", machine:self())
    elseif r[1] == "back" then
      local v, err = r[2]:call("ping")
      return err or v
    elseif r[1] == "ping" then
      return "pong"
    end
    return machine:default(r)
  end }
end

-- b_callback: b's callback_timeout. One longer than what is left of a's
-- callback makes a's call to b go to a worker, so the cycle spans threads.
local function relays(b_callback)
  local a = assert(tand.start{ min_number = 1, max_number = 9, policy = relay })
  local b = assert(tand.start{ min_number = 1, max_number = 9, policy = relay,
                               callback_timeout = b_callback })
  return a, b
end

describe("a call cycle between two policies", function()
  it("fails at once with calling_self, not at its deadline", function()
    local a, b = relays()
    local t0 = tand.now()
    assert.equal("calling_self", a:call("ask", b))
    assert.is_true(tand.now() - t0 < 1000)
    -- both go on serving, and a call that is not a cycle still works
    assert.equal("pong", a:call("ping"))
    assert.equal("pong", b:call("ping"))
    a:stop(); b:stop()
  end)

  it("fails at once across threads, from many threads at the same time", function()
    -- b runs on a worker (its 60 s callback_timeout does not fit in a's
    -- callback), and threads find a held by another and queue: the cycle
    -- is found on the request's chain whichever thread serves it. (Two
    -- asks crossing, a to b while b to a, would be a real deadlock, as
    -- between two GenServers: each handler waits for the other's.)
    local a, b = relays(60000)
    local t0 = tand.now()
    local threads = {}
    for i = 1, 8 do
      threads[i] = tand.spawn(function(x, y, n)
        local got = {}
        for _ = 1, n do got[#got + 1] = x:call("ask", y) end
        return got
      end, a, b, 50)
    end
    for i = 1, 8 do
      local got = assert(threads[i]:join(30000))
      assert.equal(50, #got)
      for _, v in ipairs(got) do assert.equal("calling_self", v) end
    end
    -- 400 cycles, each failing at once; a deadline wait would take 5 s each
    assert.is_true(tand.now() - t0 < 20000)
    a:stop(); b:stop()
  end)
end)

describe("a caller running a machine on its own thread", function()
  it("hands every number out exactly once to threads that run it", function()
    local m = assert(tand.start{ min_number = 1, max_number = 1000000 })
    local threads = {}
    for i = 1, 6 do
      threads[i] = tand.spawn(function(h, n)
        local got = {}
        for _ = 1, n do got[#got + 1] = h:queue_new_number() end
        return got
      end, m, 3000)
    end
    local seen, total = {}, 0
    for i = 1, 6 do
      for _, n in ipairs(assert(threads[i]:join(60000))) do
        assert.is_nil(seen[n], "number " .. n .. " handed out twice")
        seen[n] = true
        total = total + 1
      end
    end
    assert.equal(18000, total)
    for n = 1, 18000 do assert.is_true(seen[n], "number " .. n .. " lost") end
    assert.equal(18000, m:stats().calls)
    m:stop()
  end)

  it("does not run a policy whose callback_timeout outlasts the call's", function()
    -- The call's 100 ms cannot hold a 2000 ms callback, so a worker runs
    -- it and the caller waits with its own deadline.
    local m = assert(tand.start{ min_number = 1, max_number = 9,
                                 callback_timeout = 2000,
                                 policy = function()
      return { handle_call = function(r, from, state, machine)
        if r[1] == "slow" then require("tand").sleep(600) end
        return "done"
      end }
    end })
    m:settimeout(100)
    local t0 = tand.now()
    local v, err = m:call("slow")
    assert.is_nil(v); assert.equal("timeout", err)
    assert.is_true(tand.now() - t0 < 500)
    m:settimeout(5000)
    assert.equal("done", m:call("quick"))
    m:stop()
  end)
end)
