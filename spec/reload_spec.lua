-- m:reload: new policy code in a running server, the state kept (or
-- changed by code_change), or the change refused with nothing touched.
local tand = require "tand"
local helper = require "spec.helper"

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir))
local function path(name) return dir .. "/" .. name end
teardown(function() os.execute("rm -rf " .. dir) end)

local function write(name, text)
  local f = assert(io.open(path(name), "w"))
  f:write(text)
  f:close()
  return path(name)
end

-- Version 1 counts the numbers it hands out in state.count and answers
-- "version" with its name and the state.
local V1 = [[
return { handle_call = function(r, from, state, machine)
  if r[1] == "version" then return "v1", state end
  if r[1] == "queue_new_number" then state.count = (state.count or 0) + 1 end
  return machine:default(r)
end }
]]

-- Version 2 (a function policy: copied into the server as code, it may
-- not capture upvalues) answers "version" as v2 and counts nothing.
local function v2_policy()
  return { handle_call = function(r, from, state, machine)
    if r[1] == "version" then return "v2", state end
    return machine:default(r)
  end }
end

local function start_v1(extra)
  local opts = { min_number = 1, max_number = 999, policy = write("v1.lua", V1) }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return assert(tand.start(opts))
end

-- Two numbers queued under v1: the queue and the state a reload keeps.
local function busy_v1(extra)
  local m = start_v1(extra)
  assert.equal(1, m:queue_new_number())
  assert.equal(2, m:queue_new_number())
  return m
end

local function assert_v1_untouched(m)
  local name, state = m:call("version")
  assert.equal("v1", name)
  assert.same({ count = 2 }, state)
  assert.same({ 1, 2 }, m:report_state().queue)
  assert.equal(3, m:queue_new_number()) -- and v1 still counts
  assert.same({ count = 3 }, select(2, m:call("version")))
end

describe("m:reload", function()
  it("swaps the code and keeps the state and the queue without code_change", function()
    local m = busy_v1()
    assert.is_true(m:reload(v2_policy))
    local name, state = m:call("version")
    assert.equal("v2", name)
    assert.same({ count = 2 }, state)
    assert.same({ 1, 2 }, m:report_state().queue)
    assert.equal(3, m:queue_new_number())
    assert.same({ count = 2 }, select(2, m:call("version"))) -- v2 does not count
    m:stop()
  end)

  it("makes code_change's result the state", function()
    local m = busy_v1()
    assert.is_true(m:reload(function()
      return { handle_call = function(r, from, state, machine)
                 if r[1] == "version" then return "v2", state end
                 return machine:default(r)
               end,
               code_change = function(old, machine)
                 return { total = old.count * 10, queued = #machine:queue() }
               end }
    end))
    assert.same({ total = 20, queued = 2 }, select(2, m:call("version")))
    m:stop()
  end)

  it("reloads the same file again when given none", function()
    local file = write("same.lua", V1)
    local m = assert(tand.start{ min_number = 1, max_number = 9, policy = file })
    assert.equal(1, m:queue_new_number())
    write("same.lua", V1:gsub('"v1"', '"v1 edited"'))
    assert.is_true(m:reload())
    local name, state = m:call("version")
    assert.equal("v1 edited", name)
    assert.same({ count = 1 }, state)
    m:stop()
  end)

  it("reloads a module by name", function()
    write("reload_mod.lua", V1:gsub('"v1"', '"module"'))
    local saved = package.path
    package.path = dir .. "/?.lua;" .. package.path
    local m = assert(tand.start{ min_number = 1, max_number = 9,
                                 policy = "reload_mod" })
    write("reload_mod.lua", V1:gsub('"v1"', '"module again"'))
    local ok, err, detail = m:reload("reload_mod")
    package.path = saved
    assert.is_true(ok, detail)
    assert.equal("module again", (m:call("version")))
    ok, err, detail = m:reload("no_such_reload_mod")
    assert.is_nil(ok)
    assert.equal("reload_failed", err)
    assert.matches("policy module not found: no file", detail)
    m:stop()
  end)

  it("answers what was sent before it with the old code, after it with the new", function()
    local m = busy_v1()
    local before = { m:send_request("version"), m:send_request("version") }
    assert.is_true(m:reload(v2_policy))
    local after = m:send_request("version")
    for _, r in ipairs(before) do assert.equal("v1", (r:wait(2000))) end
    assert.equal("v2", (after:wait(2000)))
    m:stop()
  end)

  it("keeps deferred callers, requests in flight and monitors for the new code", function()
    local slow = assert(tand.start{ min_number = 1, max_number = 9,
      callback_timeout = 5000,
      policy = function()
        return { handle_call = function(r)
          require("tand").sleep(300)
          return "yes"
        end }
      end })
    local watched = assert(tand.start{ min_number = 1, max_number = 9 })
    local m = assert(tand.start{ min_number = 1, max_number = 9,
      policy = function()
        return {
          init = function() return { waiting = {} } end,
          handle_call = function(r, from, state, machine)
            if r[1] == "wait" then
              state.waiting[#state.waiting + 1] = from
              state.asked = machine:send_request(r[2], "member")
              state.watch = machine:monitor(r[3])
              return require("tand").noreply
            end
            return machine:default(r)
          end,
          handle_info = function(msg, state, machine)
            for _, from in ipairs(state.waiting) do machine:reply(from, "v1") end
            state.waiting = {}
          end }
      end })
    local w = m:send_request("wait", slow, watched)
    assert.is_true(helper.wait_for(function()
      return m:stats().calls >= 1 and slow:stats().calls >= 0
    end))
    assert.is_true(m:reload(function()
      return {
        handle_call = function(r, from, state, machine)
          if r[1] == "down" then return state.down end
          return machine:default(r)
        end,
        handle_info = function(msg, state, machine)
          if msg[1] == "reply" and msg[2] == state.asked then
            for _, from in ipairs(state.waiting) do
              machine:reply(from, "answered by v2", msg[3])
            end
            state.waiting = {}
          elseif msg[1] == "DOWN" and msg[2] == state.watch then
            state.down = msg[3]
          end
        end }
    end))
    assert.same({ "answered by v2", "yes" }, { w:wait(3000) })
    assert.is_true(watched:stop("gone"))
    assert.is_true(helper.wait_for(function() return m:call("down") == "gone" end))
    m:stop(); slow:stop()
  end)

  describe("refuses, and changes nothing, when", function()
    local cases = {
      { "the code does not compile", "return {\n x = = 1 }\n",
        "cannot load the policy: .*:2:" },
      { "the code raises as it loads", "error('refusing to load')",
        "the policy failed to load: .*refusing to load" },
      { "the code gives no table", "return 42",
        "must give a table of callbacks %(it gave a number%)" },
      { "a callback is not a function", "return { handle_call = 1 }",
        "the policy's handle_call is not a function" },
      { "passthrough names no op", "return { passthrough = { 'x' } }",
        "passthrough names 'x'" },
      { "code_change raises",
        "return { code_change = function(old) error('cannot convert') end }",
        "code_change failed: .*cannot convert.*stack traceback" },
      { "code_change raises a table",
        "return { code_change = function(old) error({}) end }",
        "code_change failed: .*table" },
      { "code_change returns nothing",
        "return { code_change = function(old) end }",
        "code_change must return the new state" },
      { "code_change changes the copy and then raises",
        "return { code_change = function(old) old.count = 99; old.new = 1; error('late') end }",
        "code_change failed: .*late" },
      { "code_change takes a number and then refuses",
        "return { code_change = function(old, machine) machine:queue_new_number() end }",
        "machine:queue_new_number cannot run during a reload" },
      { "code_change serves through default",
        "return { code_change = function(old, machine) machine:default{'serve_next_queued_number'}; return old end }",
        "machine:serve_next_queued_number cannot run during a reload" },
      { "code_change stops the server",
        "return { code_change = function(old, machine) machine:stop('upgrade'); return old end }",
        "machine:stop cannot run during a reload" },
    }
    for _, case in ipairs(cases) do
      it(case[1], function()
        local m = busy_v1()
        local ok, err, detail = m:reload(write("bad.lua", case[2]))
        assert.is_nil(ok)
        assert.equal("reload_failed", err)
        assert.matches(case[3], detail)
        assert_v1_untouched(m)
        -- and m:reload() afterwards loads v1's file, not the refused one
        assert.is_true(m:reload())
        assert.equal("v1", (m:call("version")))
        m:stop()
      end)
    end

    it("the file is missing", function()
      local m = busy_v1()
      local ok, err, detail = m:reload(dir .. "/missing.lua")
      assert.is_nil(ok)
      assert.equal("reload_failed", err)
      assert.matches("cannot load the policy: cannot open", detail)
      assert_v1_untouched(m)
      m:stop()
    end)

    it("a function policy captures upvalues", function()
      local m = busy_v1()
      local up = {}
      local ok, err = m:reload(function() return up end)
      assert.is_nil(ok)
      assert.equal("reload_failed", err)
      assert_v1_untouched(m)
      m:stop()
    end)

    it("the copy for code_change passes memory_limit", function()
      local m = assert(tand.start{ min_number = 1, max_number = 9,
        memory_limit = 2 * 1024 * 1024,
        policy = function()
          return { init = function()
                     local big = {}
                     for i = 1, 12000 do big[i] = { i } end
                     return { big = big, count = 2 }
                   end,
                   handle_call = function(r, from, state, machine)
                     if r[1] == "count" then return state.count, #state.big end
                     return machine:default(r)
                   end }
        end })
      local ok, err, detail = m:reload(function()
        return { code_change = function(old) return old end }
      end)
      assert.is_nil(ok)
      assert.equal("reload_failed", err)
      assert.matches("memory", detail)
      assert.same({ 2, 12000 }, { m:call("count") })
      m:stop()
    end)
  end)

  it("refuses a reload of a state at its memory_limit, the process going on", function()
    -- in a child: before, the reload raised outside any protected call
    -- there, and Lua's panic aborted the whole process
    local script = write("full_memory.lua", [=[
local tand = require "tand"
local m = assert(tand.start{ min_number = 1, max_number = 9,
  memory_limit = 512 * 1024,
  policy = function()
    return { handle_cast = function(r, state)
      -- fills the state to the last byte: strings kept in slots made
      -- beforehand, the largest first, with no collection meanwhile
      local t = {}
      for i = 1, 8192 do t[i] = false end
      state.fill, state.request = t, r
      local rep, pcall = string.rep, pcall
      collectgarbage(); collectgarbage("stop")
      pcall(rep, "A", 100)
      local i = 0
      for size = 1000, 41, -1 do
        repeat
          local ok, s = pcall(rep, "A", size)
          if ok then i = i + 1; t[i] = s end
        until not ok or size < 1000 or i == 8192
      end
      for size = 40, 1, -1 do
        local ok, s = pcall(rep, "B", size)
        if ok then i = i + 1; t[i] = s end
      end
      collectgarbage("restart")
    end }
  end })
m:cast("fill")
print(m:reload(function() return {} end))
print("alive", m:alive())
]=])
    local out = assert(io.popen(helper.interpreter() .. " " .. script .. " 2>&1")):read("a")
    assert.matches("nil\treload_failed\tnot enough memory", out)
    assert.matches("alive\ttrue", out)
  end)

  it("gives code_change a deep copy: shared tables, cycles and metatables kept", function()
    -- (100,000 nested tables take a while in a sanitized build)
    local m = assert(tand.start{ min_number = 1, max_number = 9,
      callback_timeout = 30000,
      policy = function()
        return { init = function()
                   local shared = { n = 1 }
                   local s = { a = shared, b = shared,
                               mt = setmetatable({}, { __index = { hello = "hi" } }) }
                   s.self = s
                   s[shared] = "table key"
                   local deep = s
                   for _ = 1, 100000 do deep.next = {}; deep = deep.next end
                   return s
                 end }
      end })
    assert.is_true(m:reload(function()
      return {
        code_change = function(old)
          local depth, t = 0, old
          while t.next do depth = depth + 1; t = t.next end
          local key
          for k, v in pairs(old) do if v == "table key" then key = k end end
          return { shared = rawequal(old.a, old.b), cycle = rawequal(old.self, old),
                   hello = old.mt.hello, depth = depth,
                   key_is_a = rawequal(key, old.a) }
        end,
        handle_call = function(r, from, state) return state end }
    end))
    assert.same({ shared = true, cycle = true, hello = "hi", depth = 100000,
                  key_is_a = true }, m:call("state"))
    m:stop()
  end)

  it("never finalizes the copy: a refused reload runs no __gc of the state", function()
    -- the state's finalizer closes a file the copy shares with the state
    local m = assert(tand.start{ min_number = 1, max_number = 9,
      policy = function()
        return { init = function()
                   return setmetatable({ f = io.tmpfile() },
                                       { __gc = function(s) s.f:close() end })
                 end,
                 handle_call = function(r, from, state, machine)
                   if r[1] == "file" then
                     collectgarbage(); collectgarbage()
                     return io.type(state.f)
                   end
                   return machine:default(r)
                 end }
      end })
    local ok, err = m:reload(function()
      return { code_change = function(old) return nil end }
    end)
    assert.is_nil(ok)
    assert.equal("reload_failed", err)
    assert.equal("file", (m:call("file")))
    m:stop()
  end)

  it("gives a sandboxed policy no finalizer through the copy", function()
    -- the sandbox refuses __gc in setmetatable; one added afterwards is
    -- not run for the table, and must not be for its copy either
    local m = assert(tand.start{ min_number = 1, max_number = 9,
      sandbox = true,
      policy = function()
        return { init = function()
                   local mt = {}
                   local s = setmetatable({}, mt)
                   mt.__gc = function() FINALIZED = (FINALIZED or 0) + 1 end
                   return s
                 end,
                 handle_call = function(r, from, state, machine)
                   if r[1] == "finalized" then
                     collectgarbage(); collectgarbage()
                     return FINALIZED or 0
                   end
                   return machine:default(r)
                 end }
      end })
    assert.is_nil((m:reload(function()
      return { code_change = function(old) return nil end }
    end)))
    assert.is_true(m:reload(function()
      return { code_change = function(old) return old end,
               handle_call = function(r, from, state, machine)
                 if r[1] == "finalized" then
                   collectgarbage(); collectgarbage()
                   return FINALIZED or 0
                 end
                 return machine:default(r)
               end }
    end))
    assert.equal(0, (m:call("finalized")))
    m:stop()
  end)

  it("crashes the server when code_change runs past callback_timeout", function()
    local m = busy_v1({ callback_timeout = 100 })
    local ok, err, detail = m:reload(function()
      return { code_change = function(old) while true do end end }
    end)
    assert.is_nil(ok)
    assert.equal("server_crashed", err)
    assert.matches("callback_timeout", detail)
    assert.is_true(helper.wait_for(function() return not m:alive() end))
  end)

  it("works in a sandboxed policy", function()
    local m = busy_v1({ sandbox = true })
    assert.is_true(m:reload(function()
      return { handle_call = function(r, from, state, machine)
        if r[1] == "io" then return type(io) end
        return machine:default(r)
      end }
    end))
    assert.equal("nil", (m:call("io")))
    assert.same({ 1, 2 }, m:report_state().queue)
    m:stop()
  end)

  it("is not there for a sandboxed policy: it would load code into the server a handle reaches", function()
    local open = busy_v1()
    local jail = assert(tand.start{ min_number = 1, max_number = 9, sandbox = true,
      policy = function()
        return { handle_call = function(r, from, state, machine)
          if r[1] == "reload" then
            return r[2]:reload(function()
              return { handle_call = function() return type(io) end }
            end)
          end
          return machine:default(r)
        end }
      end })
    local ok, err, detail = jail:call("reload", open)
    assert.is_nil(ok)
    assert.equal("server_crashed", err)
    assert.matches("method 'reload'", detail)
    assert_v1_untouched(open)
    open:stop()
  end)

  it("raises for a machine without a policy and for a wrong argument", function()
    local d = assert(tand.start{ min_number = 1, max_number = 9 })
    local ok, err = pcall(d.reload, d)
    assert.is_false(ok)
    assert.matches("not a policy server", err)
    local m = start_v1()
    assert.has_error(function() m:reload(42) end)
    assert.has_error(function() m:reload({}) end)
    d:stop()
    m:stop()
  end)

  it("answers noproc once the server has ended", function()
    local m = start_v1()
    m:stop()
    local ok, err = m:reload()
    assert.is_nil(ok)
    assert.equal("noproc", err)
  end)

  it("answers every call exactly once, each by one version, under concurrent callers", function()
    -- the two versions differ by name; code_change counts the reloads
    local text = [[
return { handle_call = function(r, from, state, machine)
  if r[1] == "version" then
    state.seq = state.seq + 1
    return NAME, state.generation, state.seq
  end
  return machine:default(r)
end,
code_change = function(old)
  return { generation = old.generation + 1, seq = old.seq }
end,
init = function() return { generation = 0, seq = 0 } end }
]]
    local even = write("even.lua", text:gsub("NAME", '"even"'))
    local odd = write("odd.lua", text:gsub("NAME", '"odd"'))
    local m = assert(tand.start{ min_number = 1, max_number = 9, policy = even })
    local threads = {}
    for i = 1, 4 do
      threads[i] = tand.spawn(function(h)
        local tand = require "tand"
        local seen, stop = {}, tand.now() + 800
        while tand.now() < stop do
          local name, generation, seq = h:call("version")
          seen[#seen + 1] = { name = name, generation = generation, seq = seq }
        end
        return seen
      end, m)
    end
    for generation = 1, 10 do
      tand.sleep(40)
      local ok, err, detail = m:reload(generation % 2 == 1 and odd or even)
      assert.is_true(ok, detail)
    end
    local replies = {}
    for i = 1, 4 do
      for _, r in ipairs(threads[i]:join()) do replies[#replies + 1] = r end
    end
    table.sort(replies, function(a, b) return a.seq < b.seq end)
    -- checked in plain Lua (a busted assert per reply would take seconds)
    local wrong
    for i, r in ipairs(replies) do
      if r.seq ~= i then -- every call handled once, none lost
        wrong = ("reply %d has seq %s"):format(i, tostring(r.seq))
      elseif r.name ~= (r.generation % 2 == 1 and "odd" or "even") then
        wrong = ("seq %d: %s answered for generation %d"):format(i, r.name,
                                                               r.generation)
      elseif i > 1 and r.generation < replies[i - 1].generation then
        wrong = ("seq %d: generation %d after %d"):format(i, r.generation,
                                                        replies[i - 1].generation)
      end
      if wrong then break end
    end
    assert.is_nil(wrong)
    assert.is_true(#replies > 100)
    local _, last = m:call("version")
    assert.equal(10, last) -- every reload taken, once each
    m:stop()
  end)

  describe("of a journaled server", function()
    local JOURNALED = [[
return {
  init = function() return { generation = 0, count = 0 } end,
  handle_call = function(r, from, state, machine)
    if r[1] == "take" then
      state.count = state.count + 1
      return (machine:queue_new_number())
    end
    if r[1] == "state" then return NAME, state.generation, state.count end
    return machine:default(r)
  end,
  code_change = function(old)
    return { generation = old.generation + 1, count = old.count }
  end }
]]
    local function versions(sub)
      local d = path(sub)
      assert(os.execute("mkdir -p " .. d))
      local f = assert(io.open(d .. "/even.lua", "w"))
      f:write((JOURNALED:gsub("NAME", '"even"'))); f:close()
      f = assert(io.open(d .. "/odd.lua", "w"))
      f:write((JOURNALED:gsub("NAME", '"odd"'))); f:close()
      return d
    end

    it("journals the new state with the reload", function()
      local d = versions("journaled")
      local j = d .. "/j.db"
      local m = assert(tand.start{ min_number = 1, max_number = 99,
                                   journal = j, policy = d .. "/even.lua" })
      assert.equal(1, m:call("take"))
      assert.is_true(m:reload(d .. "/odd.lua"))
      assert.same({ "odd", 1, 1 }, { m:call("state") })
      m:stop()
      -- the spec's code again, with the state code_change made
      m = assert(tand.start{ min_number = 1, max_number = 99,
                             journal = j, policy = d .. "/even.lua" })
      assert.same({ "even", 1, 1 }, { m:call("state") })
      assert.same({ 1 }, m:report_state().queue)
      m:stop()
    end)

    it("refuses a new state that cannot be journaled, keeping the old", function()
      local d = versions("unjournaled")
      local j = d .. "/j.db"
      local m = assert(tand.start{ min_number = 1, max_number = 99,
                                   journal = j, policy = d .. "/even.lua" })
      assert.equal(1, m:call("take"))
      local ok, err, detail = m:reload(function()
        return { code_change = function(old) old.fn = print; return old end }
      end)
      assert.is_nil(ok)
      assert.equal("reload_failed", err)
      assert.matches("cannot be journaled", detail)
      assert.same({ "even", 0, 1 }, { m:call("state") })
      assert.equal(2, m:call("take"))
      m:stop()
      m = assert(tand.start{ min_number = 1, max_number = 99,
                             journal = j, policy = d .. "/even.lua" })
      assert.same({ "even", 0, 2 }, { m:call("state") })
      m:stop()
    end)

    it("stops with journal_error when the reload's commit fails", function()
      local d = versions("full")
      local j = d .. "/j.db"
      -- a child with a file size limit (SIGXFSZ ignored, so writes fail)
      local script = d .. "/full.lua"
      local f = assert(io.open(script, "w"))
      f:write([=[
local tand = require "tand"
local j, d = arg[1], arg[2]
local m = assert(tand.start{ min_number = 1, max_number = 99, journal = j,
                             policy = d .. "/even.lua" })
assert(m:call("take"))
print(m:reload(function()
  return { code_change = function(old)
    old.big = string.rep("x", 8 * 1024 * 1024)
    return old
  end }
end))
local deadline = tand.now() + 5000
while m:alive() and tand.now() < deadline do tand.sleep(5) end
print("alive", m:alive())
]=])
      f:close()
      local cmd = ("sh -c \"trap '' XFSZ; ulimit -f 4096; exec %s %s %s %s\" 2>&1")
                  :format(helper.interpreter(), script, j, d)
      local out = assert(io.popen(cmd, "r")):read("a")
      assert.matches("nil\tjournal_error", out)
      assert.matches("alive\tfalse", out)
      -- what the journal holds: the state from before the reload
      local m = assert(tand.start{ min_number = 1, max_number = 99,
                                   journal = j, policy = d .. "/even.lua" })
      assert.same({ "even", 0, 1 }, { m:call("state") })
      m:stop()
    end)

    it("rolls back a reload past callback_timeout, answering once the journal is free", function()
      local d = versions("timeout")
      local j = d .. "/j.db"
      local m = assert(tand.start{ min_number = 1, max_number = 99, journal = j,
                                   callback_timeout = 100, policy = d .. "/even.lua" })
      assert.equal(1, m:call("take"))
      local ok, err = m:reload(function()
        return { code_change = function(old) while true do end end }
      end)
      assert.is_nil(ok)
      assert.equal("server_crashed", err)
      -- told of the crash, a caller can start the server again at once
      local again, why, detail = tand.start{ min_number = 1, max_number = 99,
                                             journal = j, policy = d .. "/even.lua" }
      assert.is_truthy(again, detail)
      assert.same({ "even", 0, 1 }, { again:call("state") })
      again:stop()
    end)

    it("loses nothing acknowledged when killed -9 among reloads", function()
      local d = versions("killed")
      local j = d .. "/j.db"
      local total, last_reload, numbers = 0, 0, {}
      for round = 1, 3 do
        local cmd = ("exec sh -c 'echo $$; exec %s spec/journal/reloader.lua %s %s'")
                    :format(helper.interpreter(), j, d)
        local child = assert(io.popen(cmd, "r"))
        local pid = assert(tonumber(child:read("l")))
        assert.equal("ready", child:read("l"))
        local function take(line)
          local n = line:match("^n (%d+)\n$")
          local g = line:match("^reload (%d+)\n$")
          if n then
            n = tonumber(n)
            assert.is_nil(numbers[n], "number " .. n .. " acknowledged twice")
            numbers[n] = true
            total = total + 1
          elseif g then
            last_reload = math.max(last_reload, tonumber(g))
          end
        end
        local deadline = tand.now() + 200 + 100 * round
        while tand.now() < deadline do
          local line = child:read("L")
          if not line then break end
          take(line)
        end
        os.execute("kill -9 " .. pid)
        for line in child:lines("L") do take(line) end
        child:close()
        local m = assert(tand.start{ min_number = 1,
                                     max_number = math.maxinteger,
                                     journal = j, policy = d .. "/even.lua" })
        local _, generation, count = m:call("state")
        assert.is_true(generation >= last_reload, "an acknowledged reload lost")
        assert.is_true(generation <= last_reload + 1)
        assert.is_true(count >= total, "an acknowledged take lost")
        local queued = {}
        for _, n in ipairs(m:report_state().queue) do queued[n] = true end
        for n in pairs(numbers) do
          assert.is_true(queued[n], "acknowledged number " .. n .. " lost")
        end
        m:stop()
      end
      assert.is_true(last_reload > 0 and total > 0)
    end)
  end)

  it("leaves a supervised child's spec alone: a restart loads what the spec names", function()
    local sup = assert(tand.supervise({ strategy = "one_for_one" },
      { { name = "reloaded", min_number = 1, max_number = 9,
          policy = write("spec_v1.lua", V1) } }))
    local h = tand.whereis("reloaded")
    assert.is_true(h:reload(v2_policy))
    assert.equal("v2", (h:call("version")))
    local before = tostring(tand.whereis("reloaded"))
    assert.is_true(h:stop("boom")) -- abnormal: the supervisor restarts it
    assert.is_true(helper.wait_for(function()
      local now = tand.whereis("reloaded")
      return now ~= nil and tostring(now) ~= before and now:alive()
    end))
    assert.equal("v1", (h:call("version")))
    sup:stop()
  end)
end)
