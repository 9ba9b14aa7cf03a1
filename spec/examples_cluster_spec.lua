-- The cluster example, examples/cluster/: run.sh as its header says, with
-- this interpreter for its two hosts, against the three nats-servers it
-- starts on loopback and stops by pid. From what the hosts printed: no
-- number was taken twice, and after the owner was killed the other host
-- owned the deli and went on above every number taken before.
local helper = require "spec.helper"

describe("examples/cluster", function()
  it("runs as its header says: one sequence, and a takeover", function()
    local f = assert(io.open("examples/cluster/run.sh"))
    local header = f:read("a")
    f:close()
    assert.matches("\n#   examples/cluster/run.sh\n", header, 1, true)

    -- A sanitized build's tests preload its runtime: into the hosts only
    -- (not into the shell's tools, nor nats-server).
    local hosts = helper.interpreter()
    local preload = os.getenv("LD_PRELOAD")
    if preload then hosts = "env LD_PRELOAD=" .. preload .. " " .. hosts end
    local p = assert(io.popen("env -u LD_PRELOAD TAND='" .. hosts ..
                              "' examples/cluster/run.sh 2>&1", "r"))
    local out = p:read("a")
    local ok, _, code = p:close()
    assert.is_true(ok, "run.sh failed (" .. tostring(code) .. "):\n" .. out)
    assert.is_nil(out:find("Sanitizer", 1, true), out)

    local victim = out:match("== the deli is on (%a); killing host %1")
    assert.is_truthy(victim, out)
    local survivor = victim == "a" and "b" or "a"
    -- what each host said, in its order
    local said, host = { a = {}, b = {} }, nil
    for line in out:gmatch("[^\n]+") do
      host = line:match("^== host (%a) said:$") or host
      local h, n, owner = line:match("^(%a): took (%d+) %(deli on (%a+)%)$")
      if h then
        assert.equal(host, h)
        table.insert(said[h], { n = tonumber(n), owner = owner })
      end
    end

    local seen, before, count = {}, 0, 0
    for _, h in ipairs({ "a", "b" }) do
      for _, t in ipairs(said[h]) do
        assert.is_nil(seen[t.n], "number " .. t.n .. " taken twice")
        seen[t.n] = true
        count = count + 1
      end
    end
    -- every number before the takeover: the victim's, and the survivor's
    -- until it owned the deli; after it, the deli never on the victim
    -- again (on the survivor, or "nobody" for a moment)
    for _, t in ipairs(said[victim]) do before = math.max(before, t.n) end
    local after, i = {}, 1
    while said[survivor][i] and said[survivor][i].owner ~= survivor do
      before = math.max(before, said[survivor][i].n)
      i = i + 1
    end
    assert.is_true(i > 1, "the survivor took nothing before the takeover")
    for j = i, #said[survivor] do
      local t = said[survivor][j]
      assert.are_not.equal(victim, t.owner)
      assert.is_true(t.n > before, ("%d after the takeover, %d before")
                                   :format(t.n, before))
      after[#after + 1] = t.n
    end
    assert.is_true(#after >= 10, "the survivor took " .. #after .. " after")
    assert.is_true(#said[victim] >= 5)
    assert.is_true(out:find("\n" .. survivor .. ": closed\n", 1, true) ~= nil)
    assert.matches(count .. " numbers taken, none twice; host " .. survivor ..
                   " took the deli over from host " .. victim, out, 1, true)
  end)
end)
