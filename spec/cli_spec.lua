-- The `tand` command: run, repl (through a pipe and through a terminal),
-- check and bench, their errors and exit codes. The program is the
-- build's (TAND_BUILD/tand).
local tand = require "tand"
local helper = require "spec.helper"

local build = os.getenv("TAND_BUILD") or "build"
local TAND = build .. "/tand"

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Runs the command line (args already quoted); returns stdout, stderr,
-- exit code. Never waits more than 120 s.
local function run(args, input)
  local err = os.tmpname()
  local cmd = "timeout 120 " .. TAND .. " " .. args .. " 2>" .. err
  if input then
    local inp = os.tmpname()
    local f = assert(io.open(inp, "w"))
    f:write(input)
    f:close()
    cmd = cmd .. " <" .. inp
  end
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local _, _, code = p:close()
  local f = assert(io.open(err))
  local stderr = f:read("a")
  f:close()
  os.remove(err)
  return out, stderr, code
end

local function write_file(text)
  local path = os.tmpname() .. ".lua"
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

-- A program running in a tmux session of its own: its screen, keys
-- typed one command at a time (each waits for the prompt that follows
-- its reply, so nothing is typed ahead while the console is busy).
local function terminal(cmdline)
  if os.execute("command -v tmux >/dev/null 2>&1") ~= true then
    error("tmux is needed for this test (scripts/setup installs it)")
  end
  local session = "tand-spec-" .. math.random(1e9)
  local t = {}
  local function tmux(args)
    return os.execute("tmux " .. args .. " >/dev/null 2>&1")
  end
  function t.screen()
    local p = io.popen("tmux capture-pane -p -J -t " .. session)
    local text = p:read("a")
    p:close()
    return text
  end
  function t.has(text) return t.screen():find(text, 1, true) ~= nil end
  function t.wait_for(text)
    assert.is_true(helper.wait_for(function() return t.has(text) end,
                                   20000), "never shown: " .. text .. "\n" .. t.screen())
  end
  local function prompts()
    local _, n = t.screen():gsub("tand>", "")
    return n
  end
  function t.type(keys, expect)
    local before = prompts()
    tmux("send-keys -t " .. session .. " " .. q(keys) .. " Enter")
    assert.is_true(helper.wait_for(function()
      return prompts() > before
    end, 20000))
    if expect then assert.is_truthy(t.has(expect), t.screen()) end
  end
  function t.keys(...) -- tmux key names: "queue_v", "Tab", "Enter"
    local parts = {}
    for i, k in ipairs({ ... }) do parts[i] = q(k) end
    tmux("send-keys -t " .. session .. " " .. table.concat(parts, " "))
  end
  function t.quit()
    tmux("send-keys -t " .. session .. " quit Enter")
    assert.is_true(helper.wait_for(function()
      return not tmux("has-session -t " .. session)
    end, 20000))
  end
  function t.kill() tmux("kill-session -t " .. session) end
  assert.is_true(tmux("new-session -d -x 100 -y 30 -s " .. session ..
                      " " .. q(cmdline)))
  return t
end

describe("tand", function()
  it("prints its version and usage", function()
    local out, _, code = run("--version")
    assert.equal(0, code)
    assert.equal("tand " .. tand.version .. "\n", out)
    out, _, code = run("--help")
    assert.equal(0, code)
    assert.matches("usage: tand", out)
    assert.matches("Exit codes", out)
    out, _, code = run("")
    assert.equal(2, code)
    assert.matches("usage: tand", out)
  end)

  it("refuses unknown commands and options with exit code 2", function()
    local _, err, code = run("frobnicate")
    assert.equal(2, code)
    assert.matches("unknown command 'frobnicate'", err)
    _, err, code = run("check examples/policies/vip.lua --bogus 1")
    assert.equal(2, code)
    assert.matches("unknown option '%-%-bogus'", err)
    _, err, code = run("check examples/policies/vip.lua --ops lots")
    assert.equal(2, code)
    assert.matches("%-%-ops needs an integer", err)
    _, err, code = run("check examples/policies/vip.lua --seed")
    assert.equal(2, code)
    assert.matches("%-%-seed needs a value", err)
    _, err, code = run("bench deluxe --clients 0")
    assert.equal(2, code)
    assert.matches("%-%-clients must be", err)
    _, err, code = run("bench deluxe --mix queue")
    assert.equal(2, code)
    assert.matches("OP:WEIGHT", err)
    _, err, code = run("repl --min 5 --max 5")
    assert.equal(2, code)
    assert.matches("%-%-min must be below %-%-max", err)
  end)

  it("refuses a policy that cannot be loaded, saying why", function()
    local _, err, code = run("check /nonexistent/p.lua")
    assert.equal(2, code)
    assert.matches("cannot read the policy file", err)
    local bad = write_file("return { handle_call = function( }")
    _, err, code = run("check " .. q(bad))
    assert.equal(2, code)
    assert.matches("invalid_configuration", err)
    assert.matches(":1:", err) -- the file and line
    os.remove(bad)
  end)

  describe("run", function()
    it("runs a script with its arguments and the module", function()
      local script = write_file([[
        local tand = require "tand"
        local m = assert(tand.start{ min_number = 1, max_number = 5 })
        print(arg[0] ~= nil, arg[1], arg[2], select("#", ...), ...)
        print(arg[-2] ~= nil, arg[-1], arg[-3])
        print(m:queue_new_number())
        m:stop()
      ]])
      local out, _, code = run("run " .. q(script) .. " a 'b c'")
      assert.equal(0, code)
      assert.equal("true\ta\tb c\t2\ta\tb c\ntrue\trun\tnil\n1\n", out)
      os.remove(script)
    end)

    it("reports an error with a traceback and exit code 1", function()
      local script = write_file("local function f() error('boom') end\nf()\n")
      local _, err, code = run("run " .. q(script))
      assert.equal(1, code)
      assert.matches("boom", err)
      assert.matches("stack traceback", err)
      os.remove(script)
      _, err, code = run("run /nonexistent/script.lua")
      assert.equal(2, code)
      assert.matches("cannot open", err)
    end)

    it("reads the script from stdin with run -", function()
      local out, _, code = run("run - x y", "print(require('tand').version, arg[0], ...)")
      assert.equal(0, code)
      assert.equal(tand.version .. "\t-\tx\ty\n", out)
    end)
  end)

  describe("as lua5.4", function()
    it("runs a script named first, with lua5.4's arg", function()
      local script = write_file("print(arg[-1] ~= nil, arg[0] ~= nil, ...)")
      local out, _, code = run(q(script) .. " a b")
      assert.equal(0, code)
      assert.equal("true\ttrue\ta\tb\n", out)
      os.remove(script)
      local _, err
      _, err, code = run("/nonexistent/script.lua")
      assert.equal(2, code)
      assert.matches("cannot open '/nonexistent/script.lua'", err)
    end)

    it("runs the demo as its comment says", function()
      local f = assert(io.open("examples/deli.lua"))
      local text = f:read("a")
      f:close()
      assert.matches("build/tand examples/deli.lua", text)
      local out, err, code = run("examples/deli.lua")
      assert.equal(0, code, err)
      assert.matches("served 12 of 12 tickets", out)
    end)

    it("takes -e, -l, -v, - and --", function()
      local out, _, code = run("-e 'print(1 + 1)' -e 'x = 3' -e 'print(x)'")
      assert.equal(0, code)
      assert.equal("2\n3\n", out)
      out, _, code = run("-l tand -e 'print(type(tand.start))'")
      assert.equal(0, code)
      assert.equal("function\n", out)
      out, _, code = run("-lt=tand -e 'print(t.version)'")
      assert.equal(tand.version .. "\n", out)
      out, _, code = run("-v")
      assert.equal(0, code)
      assert.matches("^tand " .. tand.version:gsub("%.", "%%.") .. " %(Lua 5%.4%)\n$", out)
      out, _, code = run("-e 'print(arg[-2], arg[-1], arg[0])' - q", "print(...)")
      assert.equal(0, code)
      assert.matches("^%-e\tprint.*\t%-\nq\n$", out)
      local script = write_file("print(...)")
      out, _, code = run("-- " .. q(script) .. " -e")
      assert.equal("-e\n", out)
      os.remove(script)
    end)

    it("reports errors as lua5.4 does, with exit codes 1 and 2", function()
      local _, err, code = run("-e 'error(\"boom\")'")
      assert.equal(1, code)
      assert.matches("%(command line%):1: boom\nstack traceback:", err)
      assert.is_nil(err:find("cli/main.lua", 1, true)) -- no frames of tand's
      _, err, code = run("-e 'x = = 1'")
      assert.equal(1, code)
      assert.matches("unexpected symbol", err)
      _, err, code = run("-e")
      assert.equal(2, code)
      assert.matches("'%-e' needs an argument", err)
      _, err, code = run("-x")
      assert.equal(2, code)
      assert.matches("unknown option '%-x'", err)
    end)
  end)

  describe("--help", function()
    for _, cmd in ipairs({ "run", "repl", "check", "bench" }) do
      it("of " .. cmd .. " prints its usage and exits 0", function()
        for _, form in ipairs({ cmd .. " --help", cmd .. " -h", "help " .. cmd }) do
          local out, err, code = run(form)
          assert.equal(0, code, form .. ": " .. err)
          assert.matches("^usage: tand " .. cmd, out)
        end
      end)
    end

    it("of check, given after other options, still helps", function()
      local out, _, code = run("check examples/policies/vip.lua --ops 5 --help")
      assert.equal(0, code)
      assert.matches("%-%-seed S", out)
    end)

    it("of an unknown command is a usage error", function()
      local _, err, code = run("help frobnicate")
      assert.equal(2, code)
      assert.matches("unknown command 'frobnicate'", err)
    end)
  end)

  describe("check", function()
    it("passes the VIP policy, and the same seed gives the same run",
       function()
      local out, _, code = run("check examples/policies/vip.lua --seed 11 "
                               .. "--ops 600 --threads 3")
      assert.equal(0, code)
      assert.matches("^tand check: ok: 600 ops %(3 threads x 100 at once, "
                     .. "then 300 in sequence%), 6 kinds of op, seed 11", out)
    end)

    it("finds the planted bug and shrinks it to a few steps", function()
      local out, _, code = run("check examples/policies/broken.lua "
                               .. "--seed 42 --ops 400")
      assert.equal(1, code)
      assert.matches("FAILED", out)
      local steps = tonumber(out:match("shrunk to (%d+) steps"))
      assert.is_not_nil(steps)
      assert.is_true(steps <= 5)
      assert.matches("fast_pass", out)
      assert.matches("reset_state", out)
      assert.matches("<%- served %d+, which was not in the queue", out)
      assert.matches("replay: tand check examples/policies/broken.lua "
                     .. "%-%-seed 42", out)
      local again = run("check examples/policies/broken.lua --seed 42 "
                        .. "--ops 400")
      assert.equal(out, again)
    end)

    it("takes ops from the command line, checked", function()
      local out, _, code = run("check examples/policies/broken.lua "
                               .. "--seed 3 --ops 200 --op fast_pass=queue")
      assert.equal(1, code)
      assert.matches("FAILED", out)
      local _, err
      _, err, code = run("check examples/policies/vip.lua --op x:nope")
      assert.equal(2, code)
      assert.matches("unknown generator 'nope'", err)
      _, err, code = run("check examples/policies/vip.lua --op x=sideways")
      assert.equal(2, code)
      assert.matches("kind 'sideways'", err)
    end)

    it("refuses to pass a policy that handles ops P.ops does not declare",
       function()
      local out, _, code = run("check spec/fixtures/hidden_op.lua --seed 1 "
                               .. "--ops 100")
      assert.equal(1, code)
      assert.matches("FAILED: the policy handles again, which P.ops does "
                     .. "not declare", out)
      -- declared on the command line, it is driven and its bug found
      out, _, code = run("check spec/fixtures/hidden_op.lua --seed 1 "
                         .. "--ops 200 --op again=queue")
      assert.equal(1, code)
      assert.matches("again%(%)%s+%-> %d+   <%- handed out", out)
      -- every example policy declares what it handles, and passes
      for _, p in ipairs({ "vip", "one_per_caller", "desks", "my_turn",
                           "matchmaking", "members_first" }) do
        out, _, code = run("check examples/policies/" .. p .. ".lua "
                           .. "--seed 5 --ops 200")
        assert.equal(0, code, p .. ": " .. out)
      end
    end)

    it("shrinks a failure of the concurrent phase, in sequence if it fails "
       .. "there", function()
      local out, _, code = run("check spec/fixtures/twice.lua --seed 7 "
                               .. "--ops 200")
      assert.equal(1, code)
      assert.matches("FAILED with 4 threads at once", out)
      assert.matches("in one thread, in the order they were sent, fail "
                     .. "too; shrunk to 2 steps", out)
      assert.matches("twice%(%)%s+%-> %d+   <%- handed out %d+, which was "
                     .. "already queued", out)
    end)

    it("shrinks a failure only threads at once find, as threads", function()
      local out, _, code = run("check spec/fixtures/crowd_shy.lua --seed 9 "
                               .. "--ops 200")
      assert.equal(1, code)
      assert.matches("FAILED with 4 threads at once", out)
      -- the crash, or (a thread calling after it) its end
      assert.is_truthy(out:find("crowded", 1, true) or
                       out:find("the reply was noproc", 1, true), out)
      local threads = tonumber(out:match("shrunk to (%d+) threads at once"))
      assert.is_not_nil(threads, out)
      assert.is_true(threads >= 2 and threads <= 4)
      assert.matches("\n  thread 1: ", out)
    end)

    it("seeds each run afresh without --seed", function()
      local seeds = {}
      for i = 1, 3 do
        local out = run("check examples/policies/vip.lua --ops 10")
        seeds[i] = out:match("seed (%d+)")
      end
      assert.is_true(seeds[1] ~= seeds[2] or seeds[2] ~= seeds[3])
    end)
  end)

  describe("bench", function()
    it("prints one JSON object with --json", function()
      local out, _, code = run("bench examples/policies/vip.lua "
                               .. "--clients 2 --seconds 0.3 --json")
      assert.equal(0, code)
      assert.matches("^{.*}\n$", out)
      local calls = tonumber(out:match('"calls":(%d+)'))
      assert.is_true(calls > 0)
      for _, field in ipairs{ "calls_per_sec", "p50_us", "p99_us", "p999_us",
                              "errors", "histogram", "mix", "clients" } do
        assert.matches('"' .. field .. '":', out)
      end
      assert.matches('"mix":"queue:70,serve:30"', out)
    end)

    it("prints a table and a histogram, and writes a plot", function()
      local svg = os.tmpname() .. ".svg"
      local out, _, code = run("bench counter --clients 2 --seconds 0.3 "
                               .. "--plot " .. q(svg))
      assert.equal(0, code)
      local calls, rate = out:match("\n%s+(%d+)%s+(%d+)%s+[%d.]+")
      assert.is_true(tonumber(calls) > 0)
      assert.is_true(tonumber(rate) > 0)
      assert.matches("latency %(us%)", out)
      assert.matches("|#+ %d+", out)
      local f = assert(io.open(svg))
      local text = f:read("a")
      f:close()
      assert.matches("^<svg", text)
      assert.matches('<rect width="%d+" height="%d+" fill="white"/>', text)
      assert.matches("calls %(log scale%)", text)
      assert.matches("latency %(us%)", text)
      for _, p in ipairs({ "p50", "p99", "p99.9" }) do
        assert.matches(">" .. p:gsub("%.", "%%.") .. " [%d.]+ us<", text)
      end
      assert.is_nil(text:find(">%<1<")) -- a "<1" bucket is escaped
      os.remove(svg)
    end)

    it("clears its progress line at a terminal", function()
      local t = terminal("sh -c " .. q(TAND .. " bench deluxe --clients 2 "
                                       .. "--seconds 1; echo DONE; sleep 60"))
      local ok, err = pcall(function()
        t.wait_for("DONE")
        local s = t.screen()
        assert.is_nil(s:find("%] +%d+%% +%d+ calls/s"), s) -- no bar left
        -- and nothing of it after the first line of the report
        assert.matches("\ntand bench deluxe: 2 clients, [%d.]+ s, mix "
                       .. "queue:70,serve:30\n", "\n" .. s)
      end)
      t.kill()
      assert(ok, err)
    end)

    it("counts refusals by token", function()
      local out, _, code = run("bench deluxe --clients 1 --seconds 0.2 "
                               .. "--mix serve:1")
      assert.equal(0, code)
      assert.matches("empty_queue%s+%d+", out)
    end)
  end)

  describe("repl", function()
    it("reads commands from a pipe", function()
      local out, _, code = run("repl --policy examples/policies/vip.lua",
        "queue\nqueue\nqueue_vip\nserve\nserve 2\nreport\nfoo\n" ..
        "serve 42\nreset\nqueue\nquit\nqueue\n")
      assert.equal(0, code)
      local expected = table.concat({
        "=> 1", "   queue: { 1 }",
        "=> 2", "   queue: { 1, 2 }",
        "=> 3", "   queue: { 1, 2, 3 }",
        "=> 3", "   queue: { 1, 2 }", -- the VIP first
        "=> 2", "   queue: { 1 }",
        "=> { auto_shutdown_timeout = inf, max_number = 99, " ..
          "min_number = 1, queue = { 1 } }",
        "error: unknown_request: unknown request 'foo'", "   queue: { 1 }",
        "error: priority_number_not_found: the priority number is not " ..
          "queued", "   queue: { 1 }",
        "=> true", "   queue: {}",
        "=> 1", "   queue: { 1 }", "" }, "\n")
      assert.equal(expected, out)
    end)

    it("answers at a terminal, with a prompt", function()
      local t = terminal(TAND .. " repl --min 1 --max 9")
      local ok, err = pcall(function()
        t.wait_for("tand>")
        t.type("queue", "=> 1")
        t.type("queue", "=> 2")
        t.type("serve 2", "queue: { 1 }")
        t.type("report", "queue = { 1 }")
        local s = t.screen()
        assert.matches("repl on deluxe", s)
        assert.matches("tand> queue\n=> 1", s)
        assert.matches("tand> serve 2\n=> 2", s)
        t.quit()
      end)
      t.kill()
      assert(ok, err)
    end)

    it("completes commands and the policy's ops with Tab", function()
      local t = terminal(TAND .. " repl --policy examples/policies/vip.lua")
      local ok, err = pcall(function()
        t.wait_for("tand>")
        t.keys("queue_v", "Tab", "Enter") -- one match: queue_vip
        t.wait_for("=> 1")
        assert.matches("tand> queue_vip ?\n=> 1", t.screen())
        t.keys("rep", "Tab", "Tab") -- two: report, report_state
        t.wait_for("report_state")
        t.keys("C-u", "quit", "Enter")
      end)
      t.kill()
      assert(ok, err)
    end)

    it("reloads a watched policy when it is saved, keeping the queue", function()
      local vip = assert(io.open("examples/policies/vip.lua")):read("a")
      local file = write_file(vip)
      local function save(text)
        local f = assert(io.open(file, "w"))
        f:write(text)
        f:close()
      end
      local t = terminal(TAND .. " repl --policy " .. file .. " --watch")
      local ok, err = pcall(function()
        t.wait_for("tand>")
        assert.is_true(t.has("watching " .. file))
        t.type("queue", "=> 1")
        t.type("queue_vip", "=> 2")
        t.type("hello", "error: unknown_request")
        -- a new op, the VIP kept: the state is the old one
        save((vip:gsub('if op == "queue_vip" then',
                       'if op == "hello" then return "hi, " .. #state.vips .. " vip"\n' ..
                       '    elseif op == "queue_vip" then', 1)))
        t.wait_for("reloaded " .. file .. "; queue: { 1, 2 }")
        t.type("hello", '=> "hi, 1 vip"')
        -- a broken save is refused and the old code runs on
        save("return { handle_call = ")
        t.wait_for("reload failed, the old code runs on (reload_failed): " ..
                   "cannot load the policy")
        t.type("hello", '=> "hi, 1 vip"')
        t.type("serve", "=> 2") -- the VIP first: still the VIP policy
        t.quit()
      end)
      t.kill()
      os.remove(file)
      assert(ok, err)
    end)

    it("refuses --watch without a policy file", function()
      local _, err, code = run("repl --watch", "")
      assert.equal(2, code)
      assert.matches("%-%-watch needs %-%-policy FILE.lua", err)
      _, err, code = run("repl --policy counter --watch", "")
      assert.equal(2, code)
    end)
  end)
end)
