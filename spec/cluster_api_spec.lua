-- The cluster's Lua API in one process, against three real nats-servers
-- on loopback (started here, stopped by pid): two hosts (two clusters)
-- share a machine; a host that gives other options than the owner runs
-- it with is refused, saying both; casts, infos and requests that do
-- not block reach the owner; a cluster's handle travels to other
-- threads and back in messages;
-- a closed cluster's handles answer cluster_unavailable; bad options
-- and unreachable servers are refused, saying why.
local tand = require "tand"
local helper = require "spec.helper"

local script = "env -u LD_PRELOAD core/tests/nats_cluster.sh"

local function sh(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  p:close()
  return out
end

describe("the cluster API", function()
  local dir, urls

  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    urls = sh(script .. " start " .. dir .. " 3"):match("[^\n]+")
    assert(urls, "the nats-servers did not start (nats-server installed?)")
  end)

  teardown(function()
    if dir then sh(script .. " stop " .. dir) end
  end)

  local function join(host)
    return assert(tand.cluster{ servers = urls, host = host, lease_ms = 500,
                                replicas = 3 })
  end

  -- a owns `name` (min 1, max 99); b is another host beside it
  local function two_hosts(name)
    local a, b = join(name .. "-a"), join(name .. "-b")
    local ma = assert(a:start{ name = name, min_number = 1, max_number = 99 })
    assert.is_true(helper.wait_for(function()
      return ma:owner() == name .. "-a"
    end, 10000))
    return a, b, ma
  end

  it("refuses a host whose options are not the owner's, saying both",
     function()
    local a, b = two_hosts("opts")
    local m, err, detail = b:start{ name = "opts", min_number = 1,
                                    max_number = 50 }
    assert.is_nil(m)
    assert.equal("invalid_configuration", err)
    assert.matches("disagree", detail)
    assert.matches("opts-a runs it with {max_number=99; min_number=1}",
                   detail, 1, true)
    assert.matches("this host gives {max_number=50; min_number=1}", detail,
                   1, true)
    -- the same options in another order, and call_timeout (each caller's
    -- own), are the same options
    local mb = assert(b:start{ max_number = 99, name = "opts",
                               call_timeout = 750, min_number = 1 })
    assert.equal(1, mb:queue_new_number())
    a:close()
    b:close()
  end)

  it("carries casts and infos to the owner", function()
    local a, b, ma = two_hosts("casts")
    local mb = assert(b:start{ name = "casts", min_number = 1,
                               max_number = 99 })
    assert.equal(1, mb:queue_new_number())
    assert.equal(2, mb:queue_new_number())
    assert.is_true(mb:reset_state()) -- a cast, from the host that does not own it
    assert.is_true(mb:send("anything")) -- an info: the deluxe machine drops it
    local n
    assert.is_true(helper.wait_for(function()
      n = ma:report_state().queue
      return #n == 0
    end, 5000))
    assert.equal(1, mb:queue_new_number())
    a:close()
    b:close()
  end)

  it("sends a cluster's handle to another thread, which calls through it",
     function()
    local a, _, ma = two_hosts("sent")
    assert.equal(1, ma:queue_new_number())
    local t = tand.spawn(function(m)
      local got = { m:queue_new_number(), m:queue_new_number() }
      -- until the cluster is closed on the first thread
      local deadline = tand.now() + 20000
      local n, err
      repeat
        n, err = m:queue_new_number()
        if n then tand.sleep(5) end
      until n == nil or tand.now() > deadline
      got[3] = err
      return got
    end, ma)
    assert.is_true(helper.wait_for(function()
      return #ma:report_state().queue >= 4
    end, 10000))
    a:close()
    local got = assert(t:join(20000))
    assert.equal(2, got[1])
    assert.equal(3, got[2])
    assert.equal("cluster_unavailable", got[3])
    -- in a message to a server of this process, and back
    local b = join("sent-b") -- (it takes the machine over)
    local mb = assert(b:start{ name = "sent", min_number = 1,
                               max_number = 99 })
    mb:settimeout(10000)
    local echo = tand.start{ policy = function()
      return { handle_call = function(request)
        if request[1] == "take" then return request[2]:queue_new_number() end
        return request[2]
      end }
    end }
    assert.equal(mb, echo:call("echo", mb))
    local before = #mb:report_state().queue
    assert.equal("integer", math.type(echo:call("take", mb)))
    assert.equal(before + 1, #mb:report_state().queue)
    echo:stop()
    b:close()
  end)

  it("answers cluster_unavailable on the handles of a closed cluster",
     function()
    local a, b, ma = two_hosts("closed")
    local mb = assert(b:whereis("closed"))
    b:close()
    local n, err = mb:queue_new_number()
    assert.is_nil(n)
    assert.equal("cluster_unavailable", err)
    a:close()
    n, err = ma:queue_new_number()
    assert.is_nil(n)
    assert.equal("cluster_unavailable", err)
  end)

  it("sends requests that do not block, to the owner and from a set",
     function()
    local a, b, ma = two_hosts("requests")
    local mb = assert(b:start{ name = "requests", min_number = 1,
                               max_number = 99 })
    -- from the host that does not own it: over NATS
    local r = assert(mb:send_request("queue_new_number"))
    assert.equal(1, r:wait(5000))
    local set = tand.requests()
    local ids = {}
    for i = 1, 10 do ids[set:call(mb, "queue_new_number")] = i end
    ids[set:call(ma, "queue_new_number")] = 11 -- and on the owner's own host
    local got = {}
    for _ = 1, 11 do
      local id, n = set:wait(5000)
      assert.is_truthy(ids[id], tostring(n))
      got[#got + 1] = n
    end
    table.sort(got)
    for i = 1, 11 do assert.equal(i + 1, got[i]) end -- each number once
    assert.equal(0, set:count())
    -- the owner leaves: a request sent meanwhile is sent again until b
    -- has taken the machine over, and answered then
    a:close()
    mb:settimeout(10000)
    assert.equal(13, mb:send_request("queue_new_number"):wait(10000))
    -- a machine nobody may own: a request ends at its deadline, timeout
    local c3 = join("requests-c")
    local orphan = assert(c3:start{ name = "orphan", owner = "never",
                                    min_number = 1, max_number = 99 })
    orphan:settimeout(300)
    local t0 = tand.now()
    local n, err = orphan:send_request("queue_new_number"):wait(5000)
    assert.is_nil(n)
    assert.equal("timeout", err)
    assert.is_true(tand.now() - t0 < 3000)
    -- closing the cluster answers what is in flight
    orphan:settimeout(10000)
    local pending = assert(orphan:send_request("queue_new_number"))
    c3:close()
    n, err = pending:wait(5000)
    assert.is_nil(n)
    assert.equal("cluster_unavailable", err)
    set:close()
    b:close()
  end)

  it("raises, saying so, for what a cluster's handle does not offer",
     function()
    local a, _, ma = two_hosts("offers")
    for _, call in ipairs{
      function() return ma:stop() end,
      function() return ma:stats() end,
      function() return ma:monitor() end,
    } do
      local ok, err = pcall(call)
      assert.is_false(ok)
      assert.matches("not available on a cluster's machine", err, 1, true)
    end
    assert.equal(1, ma:queue_new_number()) -- and the handle still works
    a:close()
  end)

  it("says why this host could not take a machine over", function()
    local path = os.tmpname() .. ".lua"
    local f = assert(io.open(path, "w"))
    f:write('return { init = function() error("init refuses") end }\n')
    f:close()
    local c = join("broken")
    local m = assert(c:start{ name = "broken", policy = path })
    local who, err, detail
    assert.is_true(helper.wait_for(function()
      who, err, detail = m:owner()
      return detail ~= nil and detail:find("init refuses", 1, true) ~= nil
    end, 10000), tostring(detail))
    assert.is_nil(who)
    assert.equal("noproc", err)
    assert.matches("this host's last try to take it over failed", detail,
                   1, true)
    c:close()
    os.remove(path)
  end)

  it("refuses bad options and unreachable servers, saying why", function()
    local c, err, detail = tand.cluster{ servers = "nats://127.0.0.1:1",
                                         host = "x", lease_ms = 500 }
    assert.is_nil(c)
    assert.equal("cluster_unavailable", err)
    assert.matches("cannot reach the NATS servers nats://127.0.0.1:1", detail,
                   1, true)
    c, err, detail = tand.cluster{ servers = urls, host = "has space" }
    assert.is_nil(c)
    assert.equal("invalid_configuration", err)
    assert.matches("host", detail)
    c, err, detail = tand.cluster{ servers = urls, host = "x", lease_ms = 5 }
    assert.is_nil(c)
    assert.equal("invalid_configuration", err)
    assert.matches("lease_ms", detail)
    c, err = tand.cluster{ servers = urls, host = "x", bogus = 1 }
    assert.is_nil(c)
    assert.equal("invalid_configuration", err)
    c = join("bad")
    local m
    m, err, detail = c:start{ name = "bad", owner = "sometimes" }
    assert.is_nil(m)
    assert.equal("invalid_configuration", err)
    assert.matches("owner", detail)
    m, err, detail = c:start{ name = "bad", durability = "full" }
    assert.is_nil(m)
    assert.equal("invalid_configuration", err)
    assert.matches("replicated", detail)
    m, err = c:start{ name = "bad", journal = "/tmp/x.db" }
    assert.is_nil(m)
    assert.equal("invalid_configuration", err)
    m, err = c:whereis("nobody started this")
    assert.is_nil(m)
    assert.equal("noproc", err)
    c:close()
  end)
end)
