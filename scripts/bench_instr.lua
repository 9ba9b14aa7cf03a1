-- scripts/bench_instr.lua - instructions per call (callgrind), one client:
--   c_next        tand_call of the counter's next op from C (bench_instr)
--   lua_next      m:next("me") on tand.start(0)
--   lua_deluxe    queue_new_number + serve_next_queued_number, built-in
--   lua_vip_call  m:call("queue_vip") + serve, the VIP example policy
--   lua_vip       queue_new_number + serve through the VIP policy
-- Each runs under valgrind --tool=callgrind for n and for 2n iterations;
-- (Ir(2n) - Ir(n)) / n is the cost of one iteration, startup cancelled.
-- With one client the engine runs each call on the caller's thread, so
-- the counts hardly move from run to run. Prints one row per workload:
-- kind, calls per iteration, n, both totals, per iteration, per call.
-- Usage, from the repository's root (BIN: BUILD/core/tests/bench_instr):
--   scripts/lua -b BUILD scripts/bench_instr.lua BIN [n]   (n: 20000)
-- The Lua workloads run in the same interpreter with the same LUA_CPATH
-- (scripts/lua's); `--run KIND n` is that inner run.

local function workload(kind, n)
  local tand = require "tand"
  local m
  if kind == "lua_next" then
    m = assert(tand.start(0))
    for _ = 1, n do assert(m:next("me")) end
  else
    local opts = { min_number = 1, max_number = math.maxinteger }
    if kind ~= "lua_deluxe" then
      package.path = "./examples/?.lua;" .. package.path
      opts.policy = "policies.vip"
    end
    m = assert(tand.start(opts))
    if kind == "lua_vip_call" then
      for _ = 1, n do
        assert(m:call("queue_vip"))
        assert(m:serve_next_queued_number())
      end
    else
      for _ = 1, n do
        assert(m:queue_new_number())
        assert(m:serve_next_queued_number())
      end
    end
  end
  m:stop()
end

if arg[1] == "--run" then
  workload(arg[2], assert(math.tointeger(tonumber(arg[3]))))
  return
end

local c_bin = assert(arg[1], "usage: bench_instr.lua PATH/TO/bench_instr [n]")
local n = math.tointeger(tonumber(arg[2] or "20000")) or 20000
local lua = arg[-1] or "lua5.4"
local script = arg[0]

local function sh(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- the "Collected" total of one run under callgrind, or nil and why
local function ir(cmd)
  local err = os.tmpname()
  local ok = os.execute("timeout 300 valgrind --tool=callgrind " ..
                        "--callgrind-out-file=/dev/null " .. cmd ..
                        " >/dev/null 2>" .. sh(err))
  local f = io.open(err)
  local text = f and f:read("a") or ""
  if f then f:close() end
  os.remove(err)
  local total = text:match("Collected : (%d+)")
  if not ok or not total then
    return nil, (text:match("[^\n]*\n?$") or ""):gsub("%s+$", "")
  end
  return tonumber(total)
end

local rows = {
  { "c_next", 1, sh(c_bin) },
  { "lua_next", 1 },
  { "lua_deluxe", 2 },
  { "lua_vip_call", 2 },
  { "lua_vip", 2 },
}
print(("%-13s %5s %7s %12s %12s %9s %9s"):format("kind", "calls", "n",
      "ir_n", "ir_2n", "per_iter", "per_call"))
local failed = false
for _, r in ipairs(rows) do
  local kind, calls, cmd = r[1], r[2], r[3]
  cmd = cmd or (sh(lua) .. " " .. sh(script) .. " --run " .. kind)
  local a, why = ir(cmd .. " " .. n)
  local b
  if a then b, why = ir(cmd .. " " .. 2 * n) end
  if a and b then
    local per = (b - a) / n
    print(("%-13s %5d %7d %12d %12d %9.1f %9.1f"):format(kind, calls, n,
          a, b, per, per / calls))
  else
    io.stderr:write(("bench_instr: %s failed: %s\n"):format(kind, why or "?"))
    failed = true
  end
  io.stdout:flush()
end
os.exit(not failed)
