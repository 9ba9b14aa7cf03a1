-- Journals: machines that resume after a stop, a crash or a kill -9.
local tand = require "tand"
local helper = require "spec.helper"

package.path = "./examples/?.lua;" .. package.path

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir))
local function path(name) return dir .. "/" .. name end

teardown(function() os.execute("rm -rf " .. dir) end)

local interpreter = helper.interpreter

local function deli(p, extra)
  local opts = { min_number = 1, max_number = 1000, journal = p }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return tand.start(opts)
end

describe("a journaled machine", function()
  it("resumes its queue in order, and never hands a queued number out", function()
    local p = path("deli.db")
    local m = assert(deli(p))
    for i = 1, 5 do assert.equal(i, m:queue_new_number()) end
    assert.equal(3, m:serve_next_queued_number(3))
    m:stop()
    m = assert(deli(p))
    assert.same({ 1, 2, 4, 5 }, m:report_state().queue)
    assert.equal(6, m:queue_new_number())
    m:reset_state()
    assert.same({}, m:report_state().queue) -- handled before the stop
    m:stop()
    m = assert(deli(p))
    assert.same({}, m:report_state().queue)
    m:stop()
  end)

  it("keeps the counter's number and last caller", function()
    local p = path("counter.db")
    local c = assert(tand.start{ initial_number = 100, journal = p })
    assert.equal(100, c:next("user1"))
    c:stop()
    c = assert(tand.start{ initial_number = 100, journal = p })
    assert.same({ 101, "user1" }, { c:report() })
    c:stop()
  end)

  it("keeps a policy's tickets and its plain-data state", function()
    local p = path("vip.db")
    local m = assert(deli(p, { policy = "policies.vip" }))
    m:queue_new_number(); m:call("queue_vip"); m:queue_new_number()
    m:stop()
    m = assert(deli(p, { policy = "policies.vip" }))
    assert.same({ 1, 2, 3 }, m:report_state().queue)
    assert.equal(2, m:serve_next_queued_number()) -- the VIP is remembered
    m:stop()
  end)

  it("keeps nothing of a batch whose callback crashed", function()
    local p = path("crashy.db")
    local function policy()
      return { handle_call = function(r, from, state, machine)
        if r[1] == "take_and_crash" then
          machine:queue_new_number()
          error("after taking a number")
        end
        return machine:default(r)
      end }
    end
    local m = assert(deli(p, { policy = policy }))
    assert.equal(1, m:queue_new_number())
    local v, err, detail = m:call("take_and_crash")
    assert.is_nil(v); assert.equal("server_crashed", err)
    assert.matches("after taking a number", detail)
    assert.is_true(helper.wait_for(function() return not m:alive() end))
    -- not alive is "stopping": stop waits for its end, which lets go of
    -- the journal (and says noproc)
    assert.equal("noproc", select(2, m:stop()))
    m = assert(deli(p, { policy = policy }))
    assert.same({ 1 }, m:report_state().queue)
    m:stop()
  end)

  it("refuses to resume a saved state bigger than memory_limit", function()
    local p = path("big_state.db")
    local function policy()
      return { handle_call = function(r, from, state)
        state.blob = string.rep("b", r[2])
        return #state.blob
      end }
    end
    local m = assert(deli(p, { policy = policy }))
    assert.equal(400000, m:call("keep", 400000))
    m:stop()
    local none, err, detail = deli(p, { policy = policy,
                                        memory_limit = 256 * 1024 })
    assert.is_nil(none); assert.equal("out_of_memory", err)
    assert.matches("memory_limit", detail)
    m = assert(deli(p, { policy = policy })) -- the journal is untouched
    assert.equal(10, m:call("keep", 10))
    m:stop()
  end)

  it("with durability = 'os' resumes after a stop", function()
    local p = path("os.db")
    local m = assert(deli(p, { durability = "os" }))
    m:queue_new_number()
    m:stop()
    m = assert(deli(p, { durability = "os" }))
    assert.same({ 1 }, m:report_state().queue)
    m:stop()
  end)

  it("refuses bad journal options", function()
    for _, extra in ipairs({ { durability = "os", journal = false },
                             { durability = "sometimes" },
                             { journal = "" }, { journal = 42 } }) do
      local opts = { min_number = 1, max_number = 9, journal = path("x.db") }
      for k, v in pairs(extra) do opts[k] = v or nil end
      local m, err = tand.start(opts)
      assert.is_nil(m); assert.equal("invalid_configuration", err)
    end
  end)

  it("refuses a journal that cannot be used, changing nothing", function()
    local m, err, detail = deli("/nonexistent-dir/deli.db")
    assert.is_nil(m); assert.equal("journal_error", err)
    assert.matches("cannot open", detail)
    local junk = path("junk.db")
    local f = assert(io.open(junk, "wb")); f:write(("x"):rep(5000)); f:close()
    m, err, detail = deli(junk)
    assert.is_nil(m); assert.equal("journal_error", err)
    assert.matches("not a tand journal", detail)
    f = assert(io.open(junk, "rb"))
    assert.equal(("x"):rep(5000), f:read("a")); f:close()
    -- the range is part of the journal
    local p = path("range.db")
    assert(deli(p)):stop()
    m, err, detail = tand.start{ min_number = 1, max_number = 50, journal = p }
    assert.is_nil(m); assert.equal("invalid_configuration", err)
    assert.matches("1..1000", detail)
    -- a counter's journal is not a deluxe machine's
    assert(tand.start{ initial_number = 1, journal = path("c2.db") }):stop()
    m, err, detail = deli(path("c2.db"))
    assert.is_nil(m); assert.equal("journal_error", err)
    assert.matches("counter", detail)
  end)

  it("restarts under a supervisor from its last durable state", function()
    local p = path("supervised.db")
    local sup = assert(tand.supervise({}, { {
      name = "durable_deli", min_number = 1, max_number = 99, journal = p,
      policy = function()
        return { handle_call = function(r, from, s, machine)
          if r[1] == "crash" then error("on purpose") end
          return machine:default(r)
        end }
      end } }))
    local m = tand.whereis("durable_deli")
    assert.equal(1, m:queue_new_number())
    assert.equal(2, m:queue_new_number())
    assert.equal("server_crashed", select(2, m:call("crash")))
    assert.is_true(helper.wait_for(function() return m:alive() end))
    assert.same({ 1, 2 }, m:report_state().queue)
    assert.equal(3, m:queue_new_number())
    sup:stop()
  end)
end)

describe("kill -9", function()
  local function run_and_kill(journal, ms)
    local cmd = ("exec sh -c 'echo $$; exec %s spec/journal/taker.lua %s 4'")
                :format(interpreter(), journal)
    local child = assert(io.popen(cmd, "r"))
    local pid = assert(tonumber(child:read("l")))
    assert.equal("ready", child:read("l"))
    local acked, deadline = {}, tand.now() + ms
    while tand.now() < deadline do
      local line = child:read("L")
      if not line then break end
      if line:sub(-1) == "\n" then acked[#acked + 1] = tonumber(line) end
    end
    os.execute("kill -9 " .. pid)
    for line in child:lines("L") do -- printed before the kill: acknowledged
      if line:sub(-1) == "\n" then acked[#acked + 1] = tonumber(line) end
    end
    child:close()
    return acked
  end

  it("loses no acknowledged number and hands none out again", function()
    local journal = path("killed.db")
    local all = {}
    for round = 1, 3 do
      local acked = run_and_kill(journal, 300 + 100 * round)
      assert.is_true(#acked > 0, "round " .. round .. " took no number")
      for _, n in ipairs(acked) do
        assert.is_nil(all[n], "number " .. n .. " acknowledged twice")
        all[n] = true
      end
      local m = assert(tand.start{ min_number = 1,
                                   max_number = math.maxinteger,
                                   journal = journal })
      local queued, highest = {}, 0
      for _, n in ipairs(m:report_state().queue) do
        queued[n] = true
        if n > highest then highest = n end
      end
      for n in pairs(all) do
        assert.is_true(queued[n], "acknowledged number " .. n .. " lost")
      end
      local fresh = m:queue_new_number()
      assert.is_nil(queued[fresh], "number " .. fresh .. " handed out again")
      assert.is_true(fresh > highest)
      all[fresh] = true
      m:stop()
    end
  end)
end)

describe("one server per journal", function()
  local function refused_as_held(p, m, err, detail)
    assert.is_nil(m)
    assert.equal("journal_locked", err)
    assert.is_truthy(detail:find(p, 1, true), detail)
  end

  it("refuses a second counter on a held journal, naming it", function()
    local p = path("held_counter.db")
    local c = assert(tand.start{ initial_number = 100, journal = p })
    assert.equal(100, c:next("first"))
    refused_as_held(p, tand.start{ initial_number = 100, journal = p })
    refused_as_held(p, deli(p)) -- whatever the kind of machine
    assert.equal(101, c:next("first")) -- the holder carries on
    c:stop()
    c = assert(tand.start{ initial_number = 100, journal = p })
    assert.same({ 102, "first" }, { c:report() })
    c:stop()
  end)

  it("refuses a second deluxe machine or policy on a held journal", function()
    local p = path("held_deli.db")
    local m = assert(deli(p))
    assert.equal(1, m:queue_new_number())
    refused_as_held(p, deli(p))
    refused_as_held(p, deli(p, { policy = "policies.vip" }))
    refused_as_held(p, tand.start{ initial_number = 1, journal = p })
    assert.equal(2, m:queue_new_number())
    m:stop()
    m = assert(deli(p))
    assert.same({ 1, 2 }, m:report_state().queue)
    m:stop()
  end)

  it("lets two processes take turns, handing no number out twice", function()
    local journal, script = path("turns.db"), path("turns.lua")
    local f = assert(io.open(script, "w"))
    f:write([[
      -- turns.lua JOURNAL OUT ROUNDS PER: ROUNDS times, start on JOURNAL
      -- (waiting while the other process holds it), take PER numbers,
      -- write each to OUT once acknowledged, stop.
      local tand = require "tand"
      local journal, out = arg[1], assert(io.open(arg[2], "w"))
      local rounds, per = tonumber(arg[3]), tonumber(arg[4])
      for round = 1, rounds do
        local deadline, m, err, detail = tand.now() + 60000
        repeat
          m, err, detail = tand.start{ min_number = 1,
                                       max_number = math.maxinteger,
                                       journal = journal }
          if not m and err == "journal_locked" then tand.sleep(1) end
        until m or err ~= "journal_locked" or tand.now() > deadline
        if not m then
          print("round " .. round .. ": " .. tostring(err) .. ": " ..
                tostring(detail))
          os.exit(1)
        end
        for _ = 1, per do out:write(assert(m:queue_new_number()), "\n") end
        out:flush()
        assert(m:stop())
      end
      out:close()
      print("done")
    ]])
    f:close()
    local rounds, per, outs, procs = 15, 40, {}, {}
    for i = 1, 2 do
      outs[i] = path("turns" .. i .. ".txt")
      procs[i] = assert(io.popen(("%s %s %s %s %d %d"):format(interpreter(),
        script, journal, outs[i], rounds, per), "r"))
    end
    for i = 1, 2 do
      assert.equal("done\n", procs[i]:read("a"))
      assert.is_true(procs[i]:close())
    end
    local seen, count = {}, 0
    for i = 1, 2 do
      for line in io.lines(outs[i]) do
        local n = assert(math.tointeger(tonumber(line)), line)
        assert.is_nil(seen[n], "number " .. n .. " handed out twice")
        seen[n], count = true, count + 1
      end
    end
    assert.equal(2 * rounds * per, count)
    local m = assert(tand.start{ min_number = 1, max_number = math.maxinteger,
                                 journal = journal })
    local queue = m:report_state().queue
    assert.equal(count, #queue) -- every acknowledged number is kept
    for _, n in ipairs(queue) do assert.is_true(seen[n]) end
    m:stop()
  end)
end)
