-- lua/cli/main.lua - the `tand` command: its subcommands, usage text and
-- exit codes; `tand run` itself (a Lua script with the module at hand).
local tand = require "tand"
local util = require "tand.cli.util"

local M = {}

M.usage = [=[
usage: tand <command> [arguments]

  run SCRIPT.lua [args...]
        run a Lua script with the tand module (arg and ... as in lua5.4)
  repl [--policy P [--watch]] [--min N --max M]
        a console on one machine: queue, serve [n], report, reset, any
        op of the policy with arguments, help; reads commands line by line
        from a pipe too (no prompt then); --watch reloads a policy file
        each time it is saved, keeping the machine's state
  check POLICY [--seed S] [--ops N] [--threads T] [--op NAME[:GEN,...]]...
        drive a policy with random operations from several threads and
        check the ticket invariants after each step; a failure is shrunk
        to a short reproduction, printed with the command to replay it
  bench POLICY [--clients N] [--seconds S] [--mix OP:W,...] [--json]
        [--plot FILE.svg] [--min N --max M]
        load-test a policy (or the built-in "deluxe" or "counter"): live
        progress, then calls/s, latency percentiles, errors, a histogram
  help | --help | -h    this text
  --version             the version

POLICY is a module name (on package.path) or the path of a .lua file.
Exit codes: 0 success; 1 a failure found (check found a bug, bench saw
the server crash or time out, a script raised); 2 bad usage (unknown
command or option, bad value, a policy that cannot be loaded).
]=]

local commands = {
  repl = "tand.cli.repl",
  check = "tand.cli.check",
  bench = "tand.cli.bench",
}

-- tand run: the script's errors carry a traceback; exit 1 if it raised.
-- arg is laid out as lua5.4 does: the script at 0, what ran it below.
local function run(args, program)
  local script = args[1]
  if script == nil then util.usage_error("run needs a script") end
  local chunk, err = loadfile(script)
  if chunk == nil then
    if not io.open(script, "r") then
      util.usage_error("cannot open '%s'", script)
    end
    io.stderr:write("tand run: ", err, "\n")
    return 2
  end
  local a = { [-2] = program, [-1] = "run", [0] = script }
  for i = 2, #args do a[i - 1] = args[i] end
  _G.arg = a
  local ok, e = xpcall(chunk, function(m)
    return debug.traceback(tostring(m), 2)
  end, table.unpack(a, 1, #a))
  if not ok then
    io.stderr:write("tand run: ", tostring(e), "\n")
    return 1
  end
  return 0
end

function M.main(argv)
  local cmd = argv[1]
  local args = table.move(argv, 2, #argv, 1, {})
  if cmd == nil or cmd == "help" or cmd == "--help" or cmd == "-h" then
    io.stdout:write(M.usage)
    return cmd == nil and 2 or 0
  end
  if cmd == "--version" then
    io.stdout:write("tand ", tand.version, "\n")
    return 0
  end
  local ok, code = pcall(function()
    if cmd == "run" then return run(args, argv[0]) end
    local name = commands[cmd]
    if name == nil then util.usage_error("unknown command '%s'", cmd) end
    return require(name).main(args)
  end)
  if ok then
    io.stdout:flush()
    return code or 0
  end
  if util.is_usage_error(code) then
    io.stderr:write("tand ", cmd, ": ", code.msg, "\n",
                    "(tand --help for usage)\n")
    return 2
  end
  io.stderr:write("tand ", cmd, ": ", tostring(code), "\n")
  return 1
end

return M
