-- lua/cli/util.lua - what the tand subcommands share: flag parsing with
-- usage errors, starting the machine under test, printing values, JSON.
local tand = require "tand"

local M = {}

-- A usage error: main prints it with a hint and exits 2.
local usage_mt = { __tostring = function(e) return e.msg end }

function M.usage_error(fmt, ...)
  error(setmetatable({ msg = string.format(fmt, ...) }, usage_mt), 0)
end

function M.is_usage_error(e)
  return getmetatable(e) == usage_mt
end

-- Parses args (a sequence) by spec: flag name -> "string", "integer",
-- "number", "boolean" or "list" (repeatable). Accepts --flag value and
-- --flag=value. Returns the flags and the positional arguments.
function M.parse(args, spec)
  local flags, pos = {}, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--" then
      for k = i + 1, #args do pos[#pos + 1] = args[k] end
      break
    end
    local name, value = a:match("^%-%-([%w_-]+)=(.*)$")
    name = name or a:match("^%-%-([%w_-]+)$")
    if name == nil then
      if a:sub(1, 1) == "-" and #a > 1 then
        M.usage_error("unknown option '%s'", a)
      end
      pos[#pos + 1] = a
    else
      local kind = spec[name]
      if kind == nil then M.usage_error("unknown option '--%s'", name) end
      if kind == "boolean" then
        if value ~= nil then M.usage_error("--%s takes no value", name) end
        flags[name] = true
      else
        if value == nil then
          i = i + 1
          value = args[i]
          if value == nil then M.usage_error("--%s needs a value", name) end
        end
        if kind == "integer" then
          local n = math.tointeger(tonumber(value))
          if n == nil then
            M.usage_error("--%s needs an integer (got '%s')", name, value)
          end
          value = n
        elseif kind == "number" then
          local n = tonumber(value)
          if n == nil or n ~= n then
            M.usage_error("--%s needs a number (got '%s')", name, value)
          end
          value = n
        end
        if kind == "list" then
          flags[name] = flags[name] or {}
          table.insert(flags[name], value)
        else
          flags[name] = value
        end
      end
    end
    i = i + 1
  end
  return flags, pos
end

-- Whether a policy argument names a file (else a module name).
local function is_file(p)
  return p:find("/", 1, true) ~= nil or p:sub(-4) == ".lua"
end

-- Starts the machine under test: "deluxe" (or nil), "counter", or a
-- policy (a module name or a .lua file). A bad policy is a usage error.
function M.start(policy, min, max, extra)
  local opts = {}
  for k, v in pairs(extra or {}) do opts[k] = v end
  if policy == "counter" then
    if min or max then
      M.usage_error("--min and --max are options of the deluxe machine")
    end
    opts.initial_number = 0
  else
    if (min == nil) ~= (max == nil) then
      M.usage_error("give both --min and --max, or neither")
    end
    opts.min_number, opts.max_number = min or 1, max or 99
    if opts.min_number >= opts.max_number then
      M.usage_error("--min must be below --max")
    end
    if policy ~= nil and policy ~= "deluxe" then
      if is_file(policy) then
        local f = io.open(policy, "r")
        if not f then M.usage_error("cannot read the policy file '%s'", policy) end
        f:close()
      end
      opts.policy = policy
    end
  end
  local m, err, detail = tand.start(opts)
  if not m then
    M.usage_error("cannot start %s: %s: %s", policy or "deluxe", err,
                  detail or "")
  end
  return m
end

-- The file of a policy (a path, or a module name on package.path), or
-- nil for the built-in machines and a module not found.
function M.policy_path(policy)
  if policy == nil or policy == "deluxe" or policy == "counter" then
    return nil
  end
  return is_file(policy) and policy
         or package.searchpath(policy, package.path)
end

-- Loads a policy's table in this state (to read its `ops`), or nil.
function M.policy_table(policy)
  local path = M.policy_path(policy)
  if not path then return nil end
  local chunk = loadfile(path, "t")
  if not chunk then return nil end
  local ok, p = pcall(chunk)
  if ok and type(p) == "function" then ok, p = pcall(p) end
  return ok and type(p) == "table" and p or nil
end

-- A value as Lua-like text: tables sorted, nested, on one line.
function M.show(v, seen)
  local t = type(v)
  if t == "string" then return string.format("%q", v) end
  if t ~= "table" then return tostring(v) end
  seen = seen or {}
  if seen[v] then return "<cycle>" end
  seen[v] = true
  local parts, n = {}, #v
  for i = 1, n do parts[#parts + 1] = M.show(v[i], seen) end
  local keys = {}
  for k in pairs(v) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then
      keys[#keys + 1] = k
    end
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    local key = type(k) == "string" and k:match("^[%a_][%w_]*$") and k
                or "[" .. M.show(k, seen) .. "]"
    parts[#parts + 1] = key .. " = " .. M.show(v[k], seen)
  end
  seen[v] = nil
  if #parts == 0 then return "{}" end
  return "{ " .. table.concat(parts, ", ") .. " }"
end

-- Results of a call (n values) as text: "1", "nil, empty_queue, ...";
-- trailing nils are left out.
function M.show_all(n, ...)
  while n > 1 and select(n, ...) == nil do n = n - 1 end
  local parts = {}
  for i = 1, n do parts[i] = M.show((select(i, ...))) end
  return n == 0 and "(nothing)" or table.concat(parts, ", ")
end

-- JSON text of v: tables with keys 1..n are arrays, others objects.
function M.json(v)
  local t = type(v)
  if t == "nil" then return "null" end
  if t == "boolean" then return tostring(v) end
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    if math.type(v) == "integer" then return tostring(v) end
    return string.format("%.17g", v)
  end
  if t == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c)
      local named = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n",
                      ["\t"] = "\\t", ["\r"] = "\\r" }
      return named[c] or string.format("\\u%04x", c:byte())
    end) .. '"'
  end
  if t == "table" then
    local n, count = #v, 0
    for _ in pairs(v) do count = count + 1 end
    local parts = {}
    if count == n and (n > 0 or getmetatable(v) == M.array_mt) then
      for i = 1, n do parts[i] = M.json(v[i]) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local val = v[k]
      if val == nil then val = v[math.tointeger(tonumber(k))] end
      parts[#parts + 1] = M.json(k) .. ":" .. M.json(val)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  error("cannot encode a " .. t .. " as JSON")
end

-- Marks an empty table as a JSON array.
M.array_mt = {}
function M.array(t) return setmetatable(t or {}, M.array_mt) end

return M
