-- The callback deadline under attack: whatever a policy does, a callback
-- that outlives callback_timeout crashes its server and its callers hear
-- of it, while the engine's other servers keep answering.
local tand = require "tand"
local helper = require "spec.helper"

local TIMEOUT = 200 -- each attacker's callback_timeout, ms
local BOUND = 3000  -- generous: the reply comes long before this

local function start(policy, extra)
  local opts = { min_number = 1, max_number = 1000, policy = policy,
                 callback_timeout = TIMEOUT }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return assert(tand.start(opts))
end

-- Calls m:call(op) and checks the crash came in time, with the timeout
-- named; a bystander server must still answer afterwards.
local function crashes_in_time(m, op, ...)
  local bystander = assert(tand.start{ min_number = 1, max_number = 9 })
  local t0 = tand.now()
  local v, err, detail = m:call(op, ...)
  local took = tand.now() - t0
  assert.is_nil(v)
  assert.equal("server_crashed", err)
  assert.matches("callback_timeout", detail, 1, true)
  assert.is_true(took >= TIMEOUT - 10, "crashed early: " .. took)
  assert.is_true(took < BOUND, "crashed late: " .. took)
  assert.is_false(m:alive())
  assert.equal(1, bystander:queue_new_number())
  bystander:stop()
end

for _, sandbox in ipairs({ true, false }) do
  local where = sandbox and "in the sandbox" or "in a trusted policy"

  describe("the callback deadline " .. where, function()
    local function attacker(fn)
      return start(fn, { sandbox = sandbox })
    end

    it("holds against pcall catching the timeout in a loop", function()
      local m = attacker(function()
        return { handle_call = function()
          while true do pcall(function() while true do end end) end
        end }
      end)
      crashes_in_time(m, "spin")
    end)

    it("holds against an xpcall message handler that loops", function()
      local m = attacker(function()
        return { handle_call = function()
          xpcall(function() while true do end end,
                 function(e) while true do end end)
          return "escaped"
        end }
      end)
      crashes_in_time(m, "spin")
    end)

    it("still runs a message handler for an ordinary error", function()
      local m = attacker(function()
        return { handle_call = function()
          return xpcall(function() error("plain") end,
                        function(e) return "handled: " .. tostring(e) end)
        end }
      end)
      local ok, msg = m:call("x")
      assert.is_false(ok)
      assert.matches("handled: .*plain", msg)
      m:stop()
    end)

    it("holds inside coroutines, resumed or wrapped", function()
      local m = attacker(function()
        return { handle_call = function(r)
          if r[1] == "resume" then
            local co = coroutine.create(function() while true do end end)
            while true do coroutine.resume(co) end
          end
          local f = coroutine.wrap(function() while true do end end)
          while true do pcall(f) end
        end }
      end)
      crashes_in_time(m, "resume")
      m = attacker(function()
        return { handle_call = function()
          local f = coroutine.wrap(function() while true do end end)
          while true do pcall(f) end
        end }
      end)
      crashes_in_time(m, "wrap")
    end)

    it("holds against coroutine.close running a __close handler", function()
      local m = attacker(function()
        return { handle_call = function()
          local co = coroutine.create(function()
            local guard <close> = setmetatable({}, { __close = function()
              while true do end
            end })
            coroutine.yield()
          end)
          coroutine.resume(co)
          coroutine.close(co)
          return "escaped"
        end }
      end)
      crashes_in_time(m, "close")
    end)

    it("holds against a coroutine made in an earlier callback", function()
      local m = attacker(function()
        local co
        return { handle_call = function(r)
          if r[1] == "make" then
            co = coroutine.create(function()
              coroutine.yield()
              while true do end
            end)
            coroutine.resume(co)
            return "made"
          end
          coroutine.resume(co)
          return "escaped"
        end }
      end)
      assert.equal("made", m:call("make"))
      crashes_in_time(m, "run")
    end)

    it("keeps tand's metatables out of reach", function()
      local m = attacker(function()
        return { handle_call = function(r, from, state, machine)
          return getmetatable(machine:self()), getmetatable(from),
                 getmetatable(machine)
        end }
      end)
      assert.same({ false, false, false }, { m:call("look") })
      m:stop()
    end)

    it("gives a long pattern match no way out", function()
      local m = attacker(function()
        return { handle_call = function()
          return string.find(string.rep("a", 4000), ".-.-.-.-.-.-.-b")
        end }
      end)
      crashes_in_time(m, "match")
    end)

    it("runs no terminate after a timeout", function()
      local m = attacker(function()
        return {
          handle_call = function() while true do end end,
          terminate = function() while true do end end,
        }
      end)
      crashes_in_time(m, "spin")
    end)
  end)
end

describe("a trusted policy stuck outside Lua", function()
  -- A finalizer runs with hooks off: the callback cannot be interrupted,
  -- so the watchdog ends the server; the stuck thread returns later.
  -- "stick" with the seconds to stay stuck: 2 unless given
  local function stuck_in_finalizer()
    return { handle_call = function(r, from, state, machine)
      if r[1] ~= "stick" then return machine:default(r) end
      local seconds = r[2] or 2
      setmetatable({}, { __gc = function()
        local t = os.clock() + seconds
        while os.clock() < t do end
      end })
      collectgarbage()
      return "returned"
    end }
  end

  it("is declared crashed at its deadline, its callers answered", function()
    local m = start(stuck_in_finalizer, { name = "stuck" })
    local bystander = assert(tand.start{ min_number = 1, max_number = 9 })
    local t0 = tand.now()
    local stuck = tand.spawn(function(h) return h:call("stick") end, m)
    assert.is_true(helper.wait_for(function() return m:stats().calls == 1 end))
    local queued = {}
    for i = 1, 3 do
      queued[i] = tand.spawn(function(h) return h:queue_new_number() end, m)
    end
    for i = 1, 3 do
      local n, e = queued[i]:join(BOUND)
      assert.is_nil(n)
      assert.is_true(e == "server_crashed" or e == "noproc", e)
    end
    assert.is_true(tand.now() - t0 < BOUND)
    assert.is_false(m:alive())
    assert.equal(1, bystander:queue_new_number()) -- the engine goes on
    bystander:stop()
    assert.is_nil(tand.whereis("stuck"))
    -- the name is free again at once
    local again = assert(tand.start{ min_number = 1, max_number = 9,
                                     name = "stuck" })
    again:stop()
    -- The stuck call ran on its caller's own thread (the server was
    -- free): that caller hears of the crash once its thread is back from
    -- the finalizer, as a worker would be.
    local v, err, detail = stuck:join(60000)
    assert.is_nil(v); assert.equal("server_crashed", err)
    assert.matches("callback_timeout", detail, 1, true)
  end)

  it("lets a supervisor restart a journaled child only once the journal is let go",
     function()
    local path = os.tmpname()
    os.remove(path)
    local sup = assert(tand.supervise({ strategy = "one_for_one",
                                        max_restarts = 5, max_seconds = 60 },
      { { name = "stuck_journal", min_number = 1, max_number = 99,
          journal = path, callback_timeout = TIMEOUT,
          policy = stuck_in_finalizer } }))
    local h = tand.whereis("stuck_journal")
    assert.equal(1, h:queue_new_number())
    local v, err = h:call("stick", 1)
    assert.is_nil(v); assert.equal("server_crashed", err)
    -- the restart comes once the stuck thread has let the journal go,
    -- and resumes what was acknowledged
    assert.is_true(helper.wait_for(function()
      local r = h:report_state()
      return type(r) == "table" and r.queue[1] == 1
    end, 10000))
    assert.equal(2, h:queue_new_number())
    sup:stop()
    os.remove(path)
  end)
end)

describe("a journaled policy's state", function()
  it("that cannot be journaled fails its batch with bad_value and stops", function()
    local path = os.tmpname()
    os.remove(path)
    local policy = function()
      return { handle_call = function(r, from, state, machine)
        if r[1] == "bump" then state.n = (state.n or 0) + 1; return state.n end
        if r[1] == "poison" then state.f = print; return "poisoned" end
        return machine:default(r)
      end }
    end
    local m = assert(tand.start{ min_number = 1, max_number = 9,
                                 journal = path, policy = policy })
    for i = 1, 6 do assert.equal(i, m:call("bump")) end
    local v, err, detail = m:call("poison")
    assert.is_nil(v); assert.equal("bad_value", err)
    assert.matches("journal", detail)
    m:stop() -- returns once it has ended, its journal let go
    m = assert(tand.start{ min_number = 1, max_number = 9, journal = path,
                           policy = policy })
    assert.equal(7, m:call("bump")) -- the last acknowledged state was 6
    m:stop()
    os.remove(path)
  end)
end)

describe("a journaled server that crashed", function()
  it("has let its journal go when its callers hear of the crash", function()
    local path = os.tmpname()
    os.remove(path)
    local policy = function()
      return { handle_call = function(r, from, state, machine)
        if r[1] == "crash" then
          machine:queue_new_number()
          error("boom")
        end
        if r[1] == "spin" then while true do end end
        return machine:default(r)
      end }
    end
    for _, op in ipairs({ "crash", "spin" }) do
      local m = assert(tand.start{ min_number = 1, max_number = 9,
                                   journal = path, policy = policy,
                                   callback_timeout = TIMEOUT })
      assert.equal(1, m:queue_new_number())
      local v, err = m:call(op)
      assert.is_nil(v); assert.equal("server_crashed", err)
      -- no stop, no wait: the restart finds the journal free (but for a
      -- timeout ended from outside, when a loaded machine kept the
      -- callback's thread from its hook: then its callers hear first)
      local again, e2, d2 = tand.start{ min_number = 1, max_number = 9,
                                        journal = path, policy = policy }
      if not again and op == "spin" and e2 == "journal_locked" then
        helper.wait_for(function()
          again, e2, d2 = tand.start{ min_number = 1, max_number = 9,
                                      journal = path, policy = policy }
          return again ~= nil
        end)
      end
      assert.is_truthy(again, tostring(e2) .. " " .. tostring(d2))
      assert.same({ 1 }, again:report_state().queue)
      again:reset_state()
      again:stop()
      os.remove(path)
    end
  end)
end)

describe("the sandbox's other doors", function()
  local function sandboxed(policy)
    return start(policy, { sandbox = true, callback_timeout = 2000 })
  end

  it("has no way to find a server by name", function()
    local named = assert(tand.start{ min_number = 1, max_number = 9,
                                     name = "not_for_sandboxes" })
    local m = sandboxed(function()
      return { handle_call = function()
        local t = require("tand")
        return t.whereis == nil, t.register == nil
      end }
    end)
    assert.same({ true, true }, { m:call("look") })
    assert.is_true(named:alive())
    m:stop(); named:stop()
  end)

  it("compiles chunks of 1 MiB at most, given whole or by a reader", function()
    local m = sandboxed(function()
      return { handle_call = function()
        local big = "return 1 --" .. string.rep("x", 1024 * 1024)
        local f1, e1 = load(big)
        local sent = false
        local f2, e2 = load(function()
          if sent then return nil end
          sent = true
          return big
        end)
        return f1 == nil, e1, f2 == nil, e2, load("return 42")()
      end }
    end)
    local a, e1, b, e2, v = m:call("load")
    assert.is_true(a); assert.matches("limited", e1)
    assert.is_true(b); assert.matches("limited", e2)
    assert.equal(42, v)
    m:stop()
  end)
end)

describe("a deferred call whose from the policy drops", function()
  it("costs nothing once dropped: its caller hears timeout", function()
    local m = assert(tand.start{ min_number = 1, max_number = 9,
      policy = function()
        return { handle_call = function(r)
          if r[1] == "gc" then collectgarbage(); return "collected" end
          return require("tand").noreply -- and forget `from`
        end }
      end })
    m:settimeout(2000)
    local threads = {}
    for i = 1, 4 do
      threads[i] = tand.spawn(function(h)
        h:settimeout(1)
        local timeouts = 0
        for _ = 1, 500 do
          local v, err = h:call("forget")
          if err == "timeout" then timeouts = timeouts + 1 end
        end
        return timeouts
      end, m)
    end
    for i = 1, 4 do assert.equal(500, threads[i]:join(60000)) end
    assert.equal("collected", m:call("gc"))
    -- only the call being handled (this stats call's server turn is
    -- over) may still count; the 2000 forgotten ones are gone
    assert.is_true(helper.wait_for(function()
      m:call("gc")
      return m:stats().deferred <= 1
    end, 5000), "deferred: " .. tostring(m:stats().deferred))
    m:stop()
  end)

  it("answers a caller still waiting with timeout at once", function()
    local m = assert(tand.start{ min_number = 1, max_number = 9,
      policy = function()
        return { handle_call = function(r)
          if r[1] == "gc" then collectgarbage(); return "collected" end
          return require("tand").noreply
        end }
      end })
    local waiter = tand.spawn(function(h)
      h:settimeout(20000)
      local t0 = require("tand").now()
      local v, err = h:call("forget")
      return err, require("tand").now() - t0
    end, m)
    assert.is_true(helper.wait_for(function()
      return m:stats().calls >= 1
    end))
    assert.equal("collected", m:call("gc"))
    local err, took = waiter:join(20000)
    assert.equal("timeout", err)
    assert.is_true(took < 10000)
    m:stop()
  end)
end)

describe("the watchdog", function()
  -- The threads' voluntary context switches, summed (Linux), or nil.
  local function switches()
    local stat = io.open("/proc/self/stat")
    if not stat then return nil end
    local pid = stat:read("a"):match("^(%d+)")
    stat:close()
    local ls = io.popen("ls /proc/" .. pid .. "/task 2>/dev/null")
    if not ls then return nil end
    local total, any = 0, false
    for tid in ls:lines() do
      local f = io.open("/proc/" .. pid .. "/task/" .. tid .. "/status")
      if f then
        local text = f:read("a")
        f:close()
        local n = text:match("voluntary_ctxt_switches:%s*(%d+)")
        if n then total = total + tonumber(n); any = true end
      end
    end
    ls:close()
    return any and total or nil
  end

  it("sleeps while no callback runs, even after a 1 ms callback_timeout", function()
    if not switches() then pending("no /proc/self/task here") return end
    local ms = {}
    for i = 1, 20 do
      ms[i] = assert(tand.start{ min_number = 1, max_number = 9,
                                 callback_timeout = 1,
                                 policy = function() return {} end })
      assert.equal(1, ms[i]:queue_new_number())
    end
    tand.sleep(300) -- let spare workers and timers settle
    local before = switches()
    tand.sleep(1000)
    local woke = switches() - before
    -- an idle engine sleeps; a watchdog scanning every 2 ms would have
    -- switched about 500 times
    assert.is_true(woke < 100, "context switches while idle: " .. woke)
    for i = 1, 20 do ms[i]:stop() end
  end)
end)

describe("a callback ended from outside, while it still runs", function()
  it("answers, casts and calls nothing more", function()
    local b = assert(tand.start{ min_number = 1, max_number = 99,
      name = "deadline_bystander",
      policy = function()
        return { handle_call = function(r, from, state, machine)
          if r[1] == "slow" then
            require("tand").sleep(500)
            return "B's answer"
          end
          return machine:default(r)
        end }
      end, callback_timeout = 5000 })
    local p = start(function()
      return { handle_call = function(r, from, state, machine)
        if r[1] == "defer" then
          state.kept = from
          return require("tand").noreply
        end
        -- "stick": stuck in a finalizer, where no hook runs, until the
        -- watchdog has ended the server; then it tries to go on
        setmetatable({}, { __gc = function()
          local t = os.clock() + 0.4
          while os.clock() < t do end
        end })
        collectgarbage()
        local ok = machine:reply(state.kept, "FORGED")
        for _ = 1, 20 do r[2]:cast("reset_state") end
        return "escaped"
      end }
    end)
    assert.equal(1, b:queue_new_number())
    local c = tand.spawn(function(h, other)
      local _, err = h:call("defer")
      -- the same thread, so the same reply slot, waits on another server
      -- while the killed callback still runs
      local v = other:call("slow")
      return err, v
    end, p, b)
    assert.is_true(helper.wait_for(function() return p:stats().calls == 1 end))
    local v, err = p:call("stick", b)
    assert.is_nil(v); assert.equal("server_crashed", err)
    local deferred_err, slow = c:join(BOUND)
    assert.equal("server_crashed", deferred_err)
    assert.equal("B's answer", slow)
    tand.sleep(600) -- the stuck thread has returned and gone on by now
    assert.equal(0, b:stats().casts)
    assert.same({ 1 }, b:report_state().queue)
    b:stop()
  end)
end)

describe("the sandbox's long C steps", function()
  -- The callback raises by itself: a traceback, so its thread is free
  -- again. On a loaded machine the watchdog may end it from outside
  -- before its thread gets the core back, so up to three tries; a thread
  -- stuck in C for good never shows a traceback.
  local function crashes_by_itself(code)
    local bystander = assert(tand.start{ min_number = 1, max_number = 9 })
    local detail
    for _ = 1, 3 do
      local m = start(function()
        return { handle_call = function(r) return load(r[2])() end }
      end, { sandbox = true })
      local t0 = tand.now()
      local v, err
      v, err, detail = m:call("run", code)
      assert.is_nil(v)
      assert.equal("server_crashed", err, code)
      assert.matches("callback_timeout", detail, 1, true)
      assert.is_true(tand.now() - t0 < BOUND, code)
      if not detail:find("stuck outside Lua", 1, true) then break end
    end
    assert.matches("traceback", detail, 1, true)
    assert.equal(1, bystander:queue_new_number())
    bystander:stop()
  end

  it("end with the callback, even those that allocate nothing", function()
    local m = start(function()
      return { handle_call = function()
        return string.rep("", math.maxinteger),
               ("x"):rep(0, "") .. string.rep("", math.maxinteger, "")
      end }
    end, { sandbox = true })
    local t0 = tand.now()
    assert.same({ "", "" }, { m:call("rep") }) -- nothing to build: at once
    assert.is_true(tand.now() - t0 < TIMEOUT)
    m:stop()
    for _, code in ipairs({
      'return table.move({}, 1, math.maxinteger - 1, 2)',
      'return table.move({}, -10, math.maxinteger - 20, -9)',
      'local t = setmetatable({}, { __len = function() return math.maxinteger - 1 end })'
        .. ' table.insert(t, 1, 0)',
      'local t = setmetatable({}, { __len = function() return math.maxinteger - 1 end })'
        .. ' return table.remove(t, 1)',
      'local t = {} for i = 1, 200000 do t[i] = (i * 7919) % 200000 end'
        .. ' while true do table.sort(t) table.sort(t, function(a, b) return a > b end) end',
    }) do
      crashes_by_itself(code)
    end
  end)

  it("still behave as the standard ones", function()
    local m = start(function()
      return { handle_call = function()
        local t = {}
        for i = 1, 10000 do t[i] = i end
        table.move(t, 1, 10000, 3)          -- onto itself, upwards
        local up = t[3] == 1 and t[10002] == 10000
        local d = table.move(t, 5000, 10002, 1, {}) -- into another table
        table.insert(t, 1, "first")
        table.insert(t, "last")
        local removed = table.remove(t, 1)
        return up, #d, d[1], removed, t[#t], ("ab"):rep(3, "-"),
               string.rep("", 5), select("#", string.rep("x", 0))
      end }
    end, { sandbox = true, callback_timeout = 5000 })
    assert.same({ true, 5003, 4998, "first", "last", "ab-ab-ab", "", 1 },
                { m:call("check") })
    m:stop()
  end)
end)

describe("a policy's init", function()
  it("that runs past callback_timeout fails the start", function()
    local t0 = tand.now()
    local m, err, detail = tand.start{ min_number = 1, max_number = 9,
      callback_timeout = 100,
      policy = function()
        return { init = function()
          setmetatable({}, { __gc = function()
            local t = os.clock() + 0.3
            while os.clock() < t do end
          end })
          collectgarbage()
          return {}
        end }
      end }
    assert.is_nil(m)
    assert.equal("server_crashed", err)
    assert.matches("callback_timeout", detail, 1, true)
    -- and a sandboxed one stuck in a long C step ends with its deadline
    m, err, detail = tand.start{ min_number = 1, max_number = 9,
      callback_timeout = 100, sandbox = true,
      policy = function()
        return { init = function()
          return { s = table.move({}, 1, math.maxinteger - 1, 2) }
        end }
      end }
    assert.is_nil(m)
    assert.matches("callback_timeout", detail, 1, true)
    assert.is_true(tand.now() - t0 < BOUND)
  end)
end)
