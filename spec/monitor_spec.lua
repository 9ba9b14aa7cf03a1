-- Monitors: m:monitor() and set:monitor(m) as requests, and a policy's
-- machine:monitor / machine:demonitor with {"DOWN", ref, reason} infos.
local tand = require "tand"
local helper = require "spec.helper"

local function crashable()
  return assert(tand.start{ min_number = 1, max_number = 9,
    policy = function()
      return { handle_call = function(r, from, state, machine)
        if r[1] == "crash" then error("crash on request") end
        return machine:default(r)
      end }
    end })
end

describe("m:monitor()", function()
  it("finishes with the reason when the server ends", function()
    for _, case in ipairs({ { nil, "normal" }, { "shutdown", "shutdown" },
                            { "maintenance", "maintenance" } }) do
      local m = assert(tand.start(0))
      local mon = assert(m:monitor())
      assert.is_false(mon:ready())
      assert.is_true(m:stop(case[1]))
      assert.is_true(helper.wait_for(function() return mon:ready() end))
      assert.equal(case[2], mon:wait())
      assert.equal(case[2], mon:wait()) -- kept
    end
  end)

  it("says server_crashed and the detail for a crash", function()
    local m = crashable()
    local mon = assert(m:monitor())
    m:call("crash")
    local reason = mon:wait(5000)
    assert.matches("^server_crashed: ", reason)
    assert.matches("crash on request", reason)
  end)

  it("says noproc for a server that had ended already", function()
    local m = assert(tand.start(0))
    m:stop()
    assert.equal("noproc", assert(m:monitor()):wait(5000))
  end)

  it("has no deadline of its own: a wait times out, it stays pending",
     function()
    local m = assert(tand.start(0))
    m:settimeout(100)
    local mon = assert(m:monitor())
    local t0 = tand.now()
    local v, err = mon:wait()         -- up to the handle's timeout
    assert.is_nil(v); assert.equal("timeout", err)
    assert.is_true(tand.now() - t0 >= 90)
    v, err = mon:wait(10)
    assert.is_nil(v); assert.equal("timeout", err)
    assert.is_false(mon:ready())
    m:settimeout(5000)
    assert.is_true(m:stop())
    assert.equal("normal", mon:wait(5000))
  end)

  it("can be cancelled and collected while pending", function()
    local m = assert(tand.start(0))
    local mon = assert(m:monitor())
    assert.is_true(mon:cancel())
    assert.equal("cancelled", select(2, mon:wait()))
    for _ = 1, 1000 do m:monitor() end -- dropped at once
    collectgarbage(); collectgarbage()
    assert.is_true(m:stop())
  end)

  it("goes into request sets, beside calls", function()
    local m, other = assert(tand.start(5)), assert(tand.start(0))
    local set = tand.requests()
    local mid = assert(set:monitor(m))
    local cid = assert(set:call(other, "next", "me"))
    assert.equal(2, set:count())
    local id, v = set:wait(5000)
    assert.equal(cid, id); assert.equal(0, v)
    assert.is_nil(set:poll())
    assert.is_true(m:stop("done here"))
    id, v = set:wait(5000)
    assert.equal(mid, id); assert.equal("done here", v)
    assert.equal(0, set:count())
    assert.equal("empty", select(2, set:wait()))
    local gone = assert(set:monitor(m)) -- ended: noproc at once
    id, v = set:wait(5000)
    assert.equal(gone, id); assert.equal("noproc", v)
    set:close()
    other:stop()
  end)
end)

describe("a policy's monitors", function()
  -- ("watch", name) monitors the server of that name; ("unwatch", ref);
  -- "downs" returns every DOWN info seen.
  local function watcher()
    return assert(tand.start{ min_number = 1, max_number = 9,
      policy = function()
        return {
          init = function() return { downs = {} } end,
          handle_call = function(r, from, state, machine)
            if r[1] == "watch" then
              return machine:monitor(require("tand").whereis(r[2]))
            elseif r[1] == "watch_handle" then
              return machine:monitor(r[2])
            elseif r[1] == "unwatch" then
              return machine:demonitor(r[2])
            elseif r[1] == "downs" then
              return state.downs
            end
            return machine:default(r)
          end,
          handle_info = function(msg, state)
            if msg[1] == "DOWN" then state.downs[#state.downs + 1] = msg end
          end,
        }
      end })
  end

  local function downs_of(w, n)
    local got
    assert.is_true(helper.wait_for(function()
      got = w:call("downs")
      return #got >= n
    end))
    return got
  end

  it("get {'DOWN', ref, reason} when the server ends", function()
    local w = watcher()
    local a = assert(tand.start{ initial_number = 0, name = "watched_a" })
    local c = crashable()
    assert(tand.register("watched_c", c))
    local ra = assert(w:call("watch", "watched_a"))
    local rc = assert(w:call("watch", "watched_c"))
    assert.is_true(a:stop("maintenance"))
    c:call("crash")
    local got = downs_of(w, 2)
    assert.same({ "DOWN", ra, "maintenance" }, got[1])
    assert.equal(rc, got[2][2])
    assert.matches("^server_crashed: ", got[2][3])
    w:stop()
  end)

  it("get noproc for a server that had ended", function()
    local w = watcher()
    local a = assert(tand.start{ initial_number = 0, name = "watched_gone" })
    local handle = tand.whereis("watched_gone")
    a:stop()
    local ref = assert(w:call("watch_handle", handle))
    assert.same({ { "DOWN", ref, "noproc" } }, downs_of(w, 1))
    w:stop()
  end)

  it("hear nothing of a monitor cancelled", function()
    local w = watcher()
    local a = assert(tand.start{ initial_number = 0, name = "watched_quiet" })
    local b = assert(tand.start{ initial_number = 0, name = "watched_loud" })
    local ra = assert(w:call("watch", "watched_quiet"))
    assert(w:call("watch", "watched_loud"))
    assert.is_true(w:call("unwatch", ra))
    assert.is_true(w:call("unwatch", ra)) -- twice is fine
    a:stop(); b:stop()
    local got = downs_of(w, 1)
    assert.equal(1, #got)
    assert.equal("normal", got[1][3])
    assert.is_true(w:alive())
    w:stop()
  end)

  it("refuse what is not a machine", function()
    local w = watcher()
    local v, err = w:call("watch_handle", "not a machine")
    assert.is_nil(v); assert.equal("server_crashed", err)
  end)
end)
