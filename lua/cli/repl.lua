-- lua/cli/repl.lua - `tand repl`: a console on one machine. Each line is
-- a command and its arguments (Lua literals, or bare words as strings);
-- the reply is printed, and after a change the queue.
local util = require "tand.cli.util"

local M = {}

M.usage = [=[
usage: tand repl [--policy P [--watch]] [--min N --max M]

A console on one machine. Each line is a command (help lists them); the
reply is printed, and after a change the queue. At a terminal it has a
prompt, line editing and history; from a pipe it reads one command per
line with no prompt.

options:
  --policy P     the machine: deluxe (the default), counter, a policy
                 module name or a .lua file
  --min N        the deluxe range's lowest number (default 1)
  --max M        and its highest (default 99)
  --watch        reload the policy each time its file is saved, keeping
                 the machine's state (needs --policy FILE.lua)
  -h, --help     this text
]=]

local HELP = [[
commands (arguments are Lua literals: 7, "alice", true, {1, 2}; a bare
word is a string):
  queue                 take a number (queue_new_number)
  serve [n]             serve the next number, or number n first
  report | state        the machine's state
  reset                 empty the queue (reset_state)
  next [caller]         counter: take the next number
  stats                 the server's counters
  call OP [args...]     any op, with arguments; a policy's own op may also
  OP [args...]          be typed directly: vip "alice"
  cast OP [args...]     a message with no reply
  help                  this text
  quit | exit           leave (end of input does too)
]]

-- Splits a line into words: quoted strings and {...} tables stay whole.
local function words(line)
  local out, i, n = {}, 1, #line
  while i <= n do
    local c = line:sub(i, i)
    if c:match("%s") then
      i = i + 1
    else
      local j = i
      if c == '"' or c == "'" then
        j = i + 1
        while j <= n and line:sub(j, j) ~= c do
          if line:sub(j, j) == "\\" then j = j + 1 end
          j = j + 1
        end
      elseif c == "{" then
        local depth = 0
        while j <= n do
          local d = line:sub(j, j)
          if d == "{" then depth = depth + 1
          elseif d == "}" then
            depth = depth - 1
            if depth == 0 then break end
          end
          j = j + 1
        end
      else
        while j + 1 <= n and not line:sub(j + 1, j + 1):match("%s") do
          j = j + 1
        end
      end
      out[#out + 1] = line:sub(i, j)
      i = j + 1
    end
  end
  return out
end

-- A word's value: a Lua literal, evaluated with no environment (so no
-- code runs), or else the word itself as a string.
local function value(word)
  local f = load("return " .. word, "=argument", "t", {})
  if f then
    local ok, v = pcall(f)
    if ok and v ~= nil then return v end
    if ok and word == "nil" then return nil end
  end
  if word:match("^[\"'{]") then
    error("cannot read the argument " .. word, 0)
  end
  return word
end

local aliases = {
  queue = "queue_new_number",
  serve = "serve_next_queued_number",
  report = "report_state",
  state = "report_state",
  reset = "reset_state",
}

local function show_reply(out, ...)
  local n = select("#", ...)
  if n >= 2 and (...) == nil and type(select(2, ...)) == "string" then
    local _, token, detail = ...
    out:write("error: ", token, detail and (": " .. tostring(detail)) or "",
              "\n")
    return false
  end
  out:write("=> ", util.show_all(n, ...), "\n")
  return true
end

-- Runs one command line; false at quit.
local function execute(m, counter, line, out)
  local w = words(line)
  if #w == 0 then return true end
  local cmd = w[1]
  local args = {}
  for i = 2, #w do args[i - 1] = value(w[i]) end
  local nargs = #w - 1
  if cmd == "quit" or cmd == "exit" then return false end
  if cmd == "help" then
    out:write(HELP)
    return true
  end
  if cmd == "stats" then
    out:write(util.show(m:stats()), "\n")
    return true
  end
  local changed = true
  if cmd == "cast" then
    if nargs < 1 then error("cast needs an op", 0) end
    show_reply(out, m:cast(table.unpack(args, 1, nargs)))
  elseif cmd == "call" then
    if nargs < 1 then error("call needs an op", 0) end
    show_reply(out, m:call(table.unpack(args, 1, nargs)))
  elseif counter then
    if cmd == "next" then
      show_reply(out, m:next(args[1] or "repl"))
    elseif cmd == "report" or cmd == "state" then
      show_reply(out, m:report())
      changed = false
    else
      error("the counter knows next, report, stats, call (see help)", 0)
    end
  else
    local op = aliases[cmd] or cmd
    if op == "report_state" then changed = false end
    if op == "reset_state" then
      show_reply(out, m:reset_state())
    else
      show_reply(out, m:call(op, table.unpack(args, 1, nargs)))
    end
  end
  if changed and not counter then
    local st = m:report_state()
    if type(st) == "table" and type(st.queue) == "table" then
      out:write("   queue: ", util.show(st.queue), "\n")
    end
  end
  return true
end

-- What Tab completes at the start of a line: the commands, the machine's
-- ops and those the policy declares in P.ops, sorted.
local function completions(policy, counter)
  local words = counter and { "next", "report", "stats", "call", "cast" }
                or { "queue", "serve", "report", "state", "reset", "stats",
                     "call", "cast", "queue_new_number",
                     "serve_next_queued_number", "report_state",
                     "reset_state" }
  for _, w in ipairs({ "help", "quit", "exit" }) do words[#words + 1] = w end
  local p = not counter and util.policy_table(policy)
  if p and type(p.ops) == "table" then
    for name in pairs(p.ops) do
      if type(name) == "string" then words[#words + 1] = name end
    end
  end
  table.sort(words)
  return words
end

-- --watch: a function for native.readline's idle time that reloads the
-- policy once its file has been saved and left alone for one look (an
-- editor may write it in several steps), and says how that went.
local function watcher(m, file, native)
  local function look()
    local mtime, size = native.stat(file)
    return mtime and (mtime .. ":" .. size) or "missing"
  end
  local loaded, seen = look(), nil
  return function()
    local now = look()
    if now == loaded then seen = nil return nil end
    if now ~= seen then seen = now return nil end
    loaded, seen = now, nil
    local ok, err, detail = m:reload()
    if ok then
      local st = m:report_state()
      local queue = type(st) == "table" and type(st.queue) == "table"
                    and ("; queue: " .. util.show(st.queue)) or ""
      return "reloaded " .. file .. queue
    end
    return "reload failed, the old code runs on (" .. tostring(err) .. "): " ..
           tostring(detail)
  end
end

function M.main(args)
  local flags, pos = util.parse(args, { policy = "string", min = "integer",
                                        max = "integer", watch = "boolean" })
  if #pos > 0 then util.usage_error("unexpected argument '%s'", pos[1]) end
  local counter = flags.policy == "counter"
  local ok_native, native = pcall(require, "tand.cli.native")
  if not ok_native then native = nil end
  if flags.watch and not (flags.policy and flags.policy:match("%.lua$")) then
    util.usage_error("--watch needs --policy FILE.lua (the file it watches)")
  end
  if flags.watch and not native then
    util.usage_error("--watch needs the tand command (tand repl)")
  end
  local m = util.start(flags.policy, flags.min, flags.max)
  local idle = flags.watch and watcher(m, flags.policy, native) or nil
  if native then native.set_completions(completions(flags.policy, counter)) end
  local tty = native and native.isatty(0) or false
  local out = io.stdout
  if tty then
    out:write("tand ", require("tand").version, " repl on ",
              flags.policy or "deluxe", " (help for commands)\n")
  end
  if flags.watch then
    out:write("watching ", flags.policy, ": saving it reloads the policy\n")
  end
  while true do
    local line
    if native then
      line = native.readline(tty and "tand> " or "", idle)
    else
      line = io.read("l")
    end
    if line == nil then break end
    if tty and native then native.add_history(line) end
    local ok, go = pcall(execute, m, counter, line, out)
    if not ok then
      out:write("error: ", tostring(go), "\n")
    elseif not go then
      break
    end
    out:flush()
  end
  m:stop()
  return 0
end

return M
