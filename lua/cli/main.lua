-- lua/cli/main.lua - the `tand` command: its subcommands, usage text and
-- exit codes; `tand run` itself (a Lua script with the module at hand).
local tand = require "tand"
local util = require "tand.cli.util"

local M = {}

M.usage = [=[
usage: tand <command> [arguments]
       tand [-e CODE] [-l NAME] [-v] [--] [SCRIPT.lua | -] [args...]

  run SCRIPT.lua [args...]      (or run - : the script from stdin)
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
  help [COMMAND] | --help | -h   this text, or a command's options
  --version             the version

As an interpreter, tand takes lua5.4's options: -e CODE runs CODE, -l NAME
requires NAME into the global NAME, -v prints the version, - reads the
script from stdin; `tand SCRIPT.lua` is `tand run SCRIPT.lua`.
POLICY is a module name (on package.path) or the path of a .lua file.
Exit codes: 0 success; 1 a failure found (check found a bug, bench saw
the server crash or time out, a script raised); 2 bad usage (unknown
command or option, bad value, a policy that cannot be loaded).
]=]

local RUN_USAGE = [[
usage: tand run SCRIPT.lua [args...]
       tand run - [args...]

Runs a Lua script (- : read it from stdin) with the tand module at hand,
`arg` and `...` set as lua5.4 sets them. An error prints its traceback
and exits 1.
]]

local commands = {
  repl = "tand.cli.repl",
  check = "tand.cli.check",
  bench = "tand.cli.bench",
}

-- Whether the file exists (and can be read).
local function readable(name)
  local f = io.open(name, "r")
  if f then f:close() end
  return f ~= nil
end

-- Loads the script `name` ("-" for stdin); the chunk, or a usage error
-- for a file that cannot be opened, or nil and the compile error.
local function load_script(name)
  if name == "-" then return load(io.stdin:read("a"), "=stdin") end
  local chunk, err = loadfile(name)
  if chunk == nil and not readable(name) then
    util.usage_error("cannot open '%s'", name)
  end
  return chunk, err
end

-- Calls fn(...) with a traceback on error; 0, or 1 with the error printed.
local function protected(who, fn, ...)
  local ok, e = xpcall(fn, function(m)
    -- the script's frames only, not tand's own below them
    local tb = debug.traceback(tostring(m), 2)
    return tb:match("^(.-)\n\t%[C%]: in function 'xpcall'") or tb
  end, ...)
  if not ok then
    io.stderr:write(who, ": ", tostring(e), "\n")
    return 1
  end
  return 0
end

-- Runs argv from `first` on as lua5.4 runs its command line: options
-- (-e, -l, -v, --, -; none when `options` is false), then the script and
-- its arguments, `arg` laid out as lua5.4 does (the script at 0, what
-- came before it below).
local function interpret(argv, first, options, who)
  local i, n, actions = first, #argv, {}
  while options and i <= n do
    local a = argv[i]
    local opt, attached = a:match("^%-([el])(.*)$")
    if a == "--" then
      i = i + 1
      break
    elseif a == "-" or a:sub(1, 1) ~= "-" then
      break
    elseif opt then
      local v = attached ~= "" and attached or argv[i + 1]
      if v == nil then util.usage_error("'-%s' needs an argument", opt) end
      actions[#actions + 1] = { opt, v }
      i = i + (attached ~= "" and 1 or 2)
    elseif a == "-v" then
      actions[#actions + 1] = { "v" }
      i = i + 1
    else
      util.usage_error("unknown option '%s'", a)
    end
  end
  local script = argv[i]
  local base = script and i or 0
  local a = {}
  for k = 0, n do a[k - base] = argv[k] end
  _G.arg = a
  for _, act in ipairs(actions) do
    if act[1] == "v" then
      io.stdout:write("tand ", tand.version, " (", _VERSION, ")\n")
    elseif act[1] == "l" then
      local global, mod = act[2]:match("^([^=]+)=(.+)$")
      global, mod = global or act[2], mod or act[2]
      if protected(who, function() _G[global] = require(mod) end) ~= 0 then
        return 1
      end
    else
      local chunk, err = load(act[2], "=(command line)")
      if chunk == nil then
        io.stderr:write(who, ": ", err, "\n")
        return 1
      end
      if protected(who, chunk) ~= 0 then return 1 end
    end
  end
  if script == nil then return 0 end
  local chunk, err = load_script(script)
  if chunk == nil then
    io.stderr:write(who, ": ", err, "\n")
    return 1
  end
  return protected(who, chunk, table.unpack(a, 1, n - base))
end

-- Whether args (before a "--") ask for help.
local function wants_help(args)
  for _, a in ipairs(args) do
    if a == "--" then return false end
    if a == "--help" or a == "-h" then return true end
  end
  return false
end

local function usage_of(cmd)
  if cmd == "run" then return RUN_USAGE end
  return commands[cmd] and require(commands[cmd]).usage or nil
end

function M.main(argv)
  local cmd = argv[1]
  local args = table.move(argv, 2, #argv, 1, {})
  if cmd == nil or cmd == "--help" or cmd == "-h" then
    io.stdout:write(M.usage)
    return cmd == nil and 2 or 0
  end
  if cmd == "--version" then
    io.stdout:write("tand ", tand.version, "\n")
    return 0
  end
  local ok, code = pcall(function()
    if cmd == "help" then
      if args[1] == nil then
        io.stdout:write(M.usage)
        return 0
      end
      local text = usage_of(args[1])
      if text == nil then util.usage_error("unknown command '%s'", args[1]) end
      io.stdout:write(text)
      return 0
    end
    if cmd == "run" then
      if args[1] == "--help" or args[1] == "-h" then
        io.stdout:write(RUN_USAGE)
        return 0
      end
      if args[1] == nil then util.usage_error("run needs a script") end
      return interpret(argv, 2, false, "tand run")
    end
    local name = commands[cmd]
    if name ~= nil then
      if wants_help(args) then
        io.stdout:write(require(name).usage)
        return 0
      end
      return require(name).main(args)
    end
    -- lua5.4's command line: options, or a script that exists
    if cmd:sub(1, 1) == "-" or cmd:sub(-4) == ".lua" or readable(cmd) then
      return interpret(argv, 1, true, "tand")
    end
    util.usage_error("unknown command '%s'", cmd)
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
