-- Many threads, one machine: no number is handed out twice or lost.
local tand = require "tand"

local THREADS, EACH = 4, 2500

describe("concurrency", function()
  it("never hands a number out twice to threads taking them", function()
    local m = assert(tand.start{ min_number = 1, max_number = 1000000 })
    local threads = {}
    for i = 1, THREADS do
      threads[i] = tand.spawn(function(h, n)
        local got = {}
        for k = 1, n do
          local v, err = h:queue_new_number()
          if not v then error(err) end
          got[k] = v
        end
        return got
      end, m, EACH)
    end
    local seen, count = {}, 0
    for i = 1, THREADS do
      local got = assert(threads[i]:join(60000))
      for _, v in ipairs(got) do
        assert.is_nil(seen[v], "number " .. v .. " handed out twice")
        seen[v] = true
        count = count + 1
      end
    end
    assert.equal(THREADS * EACH, count)
    for v = 1, count do assert.is_true(seen[v], "number " .. v .. " lost") end
    assert.equal(count, #m:report_state().queue)
    m:stop()
  end)

  it("serves every issued number exactly once with takers and clerks", function()
    -- A number may be issued again once it has been served (an empty
    -- queue restarts at min_number), so compare multisets: every issue
    -- is matched by exactly one serve or one remaining queued ticket.
    local m = assert(tand.start{ min_number = 1, max_number = 100000 })
    local takers, clerks = {}, {}
    for i = 1, 2 do
      takers[i] = tand.spawn(function(h, n)
        local got = {}
        for k = 1, n do got[k] = assert(h:queue_new_number()) end
        return got
      end, m, EACH)
    end
    for i = 1, 2 do
      clerks[i] = tand.spawn(function(h, n)
        local served, idle = {}, 0
        while #served < n and idle < 200000 do
          local v = h:serve_next_queued_number()
          if v then served[#served + 1] = v else idle = idle + 1 end
        end
        return served
      end, m, EACH)
    end
    local balance = {}
    local function add(v, d) balance[v] = (balance[v] or 0) + d end
    for i = 1, 2 do
      for _, v in ipairs(assert(takers[i]:join(60000))) do add(v, 1) end
    end
    for i = 1, 2 do
      for _, v in ipairs(assert(clerks[i]:join(60000))) do add(v, -1) end
    end
    local queued = m:report_state().queue
    local once = {}
    for _, v in ipairs(queued) do
      assert.is_nil(once[v], "queued twice: " .. v)
      once[v] = true
      add(v, -1)
    end
    for v, d in pairs(balance) do
      assert.equal(0, d, "number " .. v .. " issued and served differ")
    end
    m:stop()
  end)

  it("counts with the counter machine from many threads", function()
    local c = assert(tand.start(0))
    local ts = {}
    for i = 1, THREADS do
      ts[i] = tand.spawn(function(h, me, n)
        local got = {}
        for k = 1, n do got[k] = h:next(me) end
        return got
      end, c, "t" .. i, 1000)
    end
    local seen = {}
    for i = 1, THREADS do
      for _, v in ipairs(assert(ts[i]:join(60000))) do
        assert.is_nil(seen[v]); seen[v] = true
      end
    end
    assert.equal(THREADS * 1000, (c:report()))
    c:stop()
  end)
end)
