-- Auto shutdown: the deluxe machine stops when no message of any kind has
-- arrived for auto_shutdown_timeout ms. Timing is checked from below only
-- (it never stops early) and polled with generous deadlines from above.
local tand = require "tand"
local helper = require "spec.helper"

local T = 600 -- ms

local function start()
  return assert(tand.start{ min_number = 1, max_number = 9,
                            auto_shutdown_timeout = T })
end

-- Does `poke` re-arm the timer: after it, the machine lives at least T
-- more ms, then stops by itself. t0 is read before the poke, so however
-- late this thread runs after it, the machine cannot stop before t0 + T;
-- without the re-arm it would stop near t0 + T / 2.
local function stops_after(poke)
  local m = start()
  tand.sleep(T / 2)
  local t0 = tand.now()
  poke(m)
  assert.is_true(helper.wait_for(function() return not m:alive() end,
                                 T + 10000))
  assert.is_true(tand.now() - t0 >= T * 0.9,
                 "stopped " .. (tand.now() - t0) .. " ms after the message")
  local n, err = m:queue_new_number()
  assert.is_nil(n)
  assert.equal("noproc", err)
  return m
end

describe("auto shutdown", function()
  it("stops after the timeout when nothing arrives after start", function()
    local t0 = tand.now()
    local m = start()
    assert.is_true(helper.wait_for(function() return not m:alive() end,
                                   T + 10000))
    assert.is_true(tand.now() - t0 >= T * 0.9)
    assert.equal("noproc", select(2, m:report_state()))
  end)

  it("re-arms on a report", function()
    stops_after(function(m) assert.is_table(m:report_state()) end)
  end)
  it("re-arms on taking a number", function()
    stops_after(function(m) assert.equal(1, m:queue_new_number()) end)
  end)
  it("re-arms on an error", function()
    stops_after(function(m)
      assert.equal("empty_queue", select(2, m:serve_next_queued_number()))
    end)
  end)
  it("re-arms on serving", function()
    stops_after(function(m)
      m:queue_new_number()
      assert.equal(1, m:serve_next_queued_number())
    end)
  end)
  it("re-arms on a reset", function()
    stops_after(function(m) assert.is_true(m:reset_state()) end)
  end)
  it("re-arms on an unexpected message", function()
    stops_after(function(m) assert.is_true(m:send("ping")) end)
  end)

  it("stays alive while messages keep arriving", function()
    local m = start()
    local t_end = tand.now() + 3 * T
    while tand.now() < t_end do
      assert.is_truthy(m:report_state())
      tand.sleep(T / 10)
    end
    assert.is_true(m:alive())
    assert.is_true(helper.wait_for(function() return not m:alive() end,
                                   T + 10000))
  end)

  it("never stops with math.huge, the default", function()
    local m = assert(tand.start{ min_number = 1, max_number = 9,
                                 auto_shutdown_timeout = math.huge })
    tand.sleep(T)
    assert.is_true(m:alive())
    m:stop()
  end)

  it("reports its timeout", function()
    local m = start()
    assert.equal(T, m:report_state().auto_shutdown_timeout)
    m:stop()
  end)
end)
