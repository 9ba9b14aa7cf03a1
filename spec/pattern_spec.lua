-- The pattern functions of policy states (lua/lpattern.c): what Lua
-- 5.4.4's own string.find, match, gmatch and gsub give, errors included,
-- and a backtracking match that ends with its callback.
local tand = require "tand"

-- Run alike in this state (stock Lua) and in a policy state: the cases
-- are built here from a seed, so functions and nils need not travel.
local CASES = [==[
-- Runs the pattern cases with this state's string functions and returns
-- two lists: what each case was and what it gave (errors included).
-- Arguments: the random part's seed and size, and whether to include
-- the cases whose errors name the function as package.loaded does.
local seed, nrandom, with_global_names = ...
local pack, unpack, concat = table.pack, table.unpack, table.concat
local fmt, rep, char = string.format, string.rep, string.char
local descs, results = {}, {}

-- No pattern function here: they are what is compared.
local function ser(v)
  local t = math.type(v) or type(v)
  if t == "string" then return fmt("%q", v) end
  if t == "integer" or t == "float" then return t .. ":" .. tostring(v) end
  if t == "table" then
    local out = {}
    for i = 1, (v.n or #v) do out[i] = ser(v[i]) end
    return "{" .. concat(out, ",") .. "}"
  end
  return t == "nil" and "nil" or t == "boolean" and tostring(v) or t
end

local function show(args)
  local out = {}
  for i = 1, args.n do
    local v = args[i]
    out[i] = type(v) == "function" and "fn" or type(v) == "table" and "tbl"
             or ser(v)
  end
  return concat(out, ", ")
end

-- The same call sites in every state, so that error messages name the
-- same function and carry the same line.
local run = {}
function run.find(...) local f = string.find; local r = pack(f(...)); return r end
function run.match(...) local f = string.match; local r = pack(f(...)); return r end
function run.gsub(...) local f = string.gsub; local r = pack(f(...)); return r end
function run.gmatch(...)
  local f = string.gmatch
  local it = f(...)
  local out = { n = 0 }
  while out.n < 200 do
    local r = pack(pcall(it))
    out.n = out.n + 1; out[out.n] = r
    if not r[1] or r[2] == nil then break end
  end
  return out
end
function run.mfind(s, ...) local r = pack(s:find(...)); return r end
function run.mmatch(s, ...) local r = pack(s:match(...)); return r end
function run.mgsub(s, ...) local r = pack(s:gsub(...)); return r end
function run.mgmatch(s, ...)
  local out = { n = 0 }
  for a, b, c in s:gmatch(...) do
    out.n = out.n + 1; out[out.n] = pack(a, b, c)
    if out.n >= 200 then break end
  end
  return out
end
-- the libraries' own names, as pcall reaches them
function run.pfind(...) return pack(pcall(string.find, ...)) end
function run.pgsub(...) return pack(pcall(string.gsub, ...)) end

local function case(name, ...)
  local args = pack(...)
  descs[#descs + 1] = name .. "(" .. show(args) .. ")"
  results[#results + 1] = ser(pack(pcall(run[name], ...)))
end

-- ---- the hand-written part ----

local all = {}
for i = 0, 255 do all[#all + 1] = char(i) end
all = concat(all)
for _, cl in ipairs({ "a", "c", "d", "g", "l", "p", "s", "u", "w", "x",
                      "z", "." , "%", "]", "-", "q" }) do
  for _, p in ipairs({ "%" .. cl, "%" .. cl:upper(), "[%" .. cl .. "]",
                       "[^%" .. cl .. "]", "%" .. cl .. "+",
                       "[_%" .. cl:upper() .. "]" }) do
    case("gsub", all, p, "")
    case("find", all, p)
  end
end

local words = "hello world from Lua 5.4, key = value; (nested (parens)) end"
local P = table.pack
local hand = {
  -- find: plain, init, anchors
  P("find", "hello world", "o w"), P("find", "hello", "l+"),
  P("find", "hello", "xyz"), P("find", "", ""), P("find", "abc", ""),
  P("find", "abc", "", 3), P("find", "abc", "", 4), P("find", "abc", "", 5),
  P("find", "abc", "", -1), P("find", "abc", "", -10),
  P("find", "abc", "b", 0), P("find", "abc", "c", 3), P("find", "abc", "c", 4),
  P("find", "abc", "c", -1), P("find", "abc", "a", -3), P("find", "abc", "a", -2),
  P("find", "abc", "a", math.mininteger), P("find", "abc", "a", math.maxinteger),
  P("find", "abc", "x*", math.maxinteger), P("find", "abc", "x*", 4),
  P("find", "a.b", ".", 1, true), P("find", "a.b", "%."), P("find", "a+b", "+", 1, true),
  P("find", "a+b", "+"), P("find", "a.b.c", ".", 3, true), P("find", "a.b.c", ".", 3, false),
  P("find", "abc", "b", 1, 0), P("find", "abc", "b", nil, true),
  P("find", "a%b", "%", 1, true), P("find", "a%b", "%"), P("find", "a[b", "[", 1, true),
  P("find", "abc", "^b"), P("find", "abc", "^a"), P("find", "abc", "c$"),
  P("find", "abc", "b$"), P("find", "a$c", "$c"), P("find", "a$c", "a$"),
  P("find", "abc", "^"), P("find", "abc", "$"), P("find", "", "^$"),
  P("find", "abc", "^abc$"), P("find", "a^b", "a^b"), P("find", "^a", "^^a"),
  P("find", "aaa", "^a", 2), P("find", "ba", "^a", 2), P("find", "abc", "$", 10),
  P("find", "a\0b", "\0"), P("find", "a\0b", "%z"), P("find", "a\0b", "[\0]"),
  P("find", "a\0b\0", "b%z$"), P("find", "a\0", "a\0", 1, true), P("find", "x\0y", ".\0."),
  P("find", "x\0y", "[^\0]+"), P("find", "x\0y", "%\0"), P("find", "a.\0b", ".\0", 1, true),
  P("find", 12345, 34), P("find", 12.5, "%."), P("find", "a98", 98),
  P("find", nil, "x"), P("find", "x", nil), P("find", "x", "y", "z"),
  P("find", "x", "y", 1.5), P("find", {}, "a"), P("find", "x2", "2", "2"),
  P("find", "x", "x", 2^53), P("find"), P("find", "x"),
  P("find", "hello world", "(o)(r)"), P("find", "hello", "()ll()"),
  P("find", "abc", "(a)(b)(c)"), P("find", "abc", "((a)(b))"),
  -- sets
  P("find", "b", "[a-c]"), P("find", "b", "[c-a]"), P("find", "-", "[a-]"),
  P("find", "-", "[-a]"), P("find", "]", "[]]"), P("find", "a]", "[]a]+"),
  P("find", "]a", "[^]]"), P("find", "]ab", "[^]a]"), P("find", "]", "[%]]"),
  P("find", "-", "[%-]"), P("find", "-", "[a%-z]"), P("find", "b", "[a%-z]"),
  P("find", "x_", "[%a_]+"), P("find", " x", "[^%s]"), P("find", "d", "[a-c-e]"),
  P("find", "-", "[a-c-e]"), P("find", "e", "[a-c-e]"), P("find", "m", "[%a-z]"),
  P("find", "-", "[%a-z]"), P("find", "%", "[a-%%]"), P("find", "$", "[!-%%]"),
  P("find", "^", "[%^]"), P("find", "^", "[a^]"), P("find", "a", "[^^]"),
  P("find", "x", "[]"), P("find", "x", "[^]"), P("find", "x", "["),
  P("find", "x", "[a"), P("find", "x", "[%"), P("find", "x", "[%]"),
  P("find", "x", "[a-"), P("find", "x", "[^"), P("find", "b", "a["),
  P("find", "a", "a["), P("find", "", "a["), P("find", "a", "a[]"),
  P("find", "x", "%"), P("find", "x", "x%"), P("find", "ax", "a%"),
  P("find", "\200\201", "[\199-\201]+"), P("find", "\255", "[^\0-\254]"),
  -- quantifiers
  P("match", "aaab", "a*"), P("match", "aaab", "a+"), P("match", "aaab", "a-"),
  P("match", "aaab", "a-b"), P("match", "aaab", "a?"), P("match", "aaab", "a?a?a?a?b"),
  P("match", "xaab", ".-b"), P("match", "xabab", ".*b"), P("match", "abababc", "[ab]*c"),
  P("match", "tel 5550123", "%d+"), P("match", "abc123", "%a+%d*"),
  P("match", "  a bc  ", "(a*(.)%w(%s*))"), P("match", "xxx", "x*$"),
  P("match", "aaa", "^a*$"), P("match", "aab", "^a*$"), P("match", "*+", "*+"),
  P("match", "a*", "a%*"), P("match", "+", "+"), P("match", "-", "-"),
  P("match", "?", "?"), P("match", "a", "a**"), P("match", "a*", "a**"),
  P("match", "", "a*"), P("match", "", "a-"), P("match", "", "a?"), P("match", "", "a+"),
  P("match", "aaa", "()a*()"), P("match", "aaa", "()a-()"),
  -- %b, %f
  P("match", "(foo(bar))baz", "%b()"), P("match", "((a)", "%b()"),
  P("match", "a(b)c)", "%b()"), P("match", "((", "%b(("), P("match", ")(", "%b)("),
  P("match", "x", "%b"), P("match", "x", "%b("), P("match", "aa", "%baa"),
  P("match", "abba", "%bab"), P("match", "(a)(b)", "%b()+"), P("match", "()*", "%b()*"),
  P("match", "", "%b()"), P("match", "x\0y\0", "%b\0\0"), P("match", "[x]", "%b[]"),
  P("match", "(((x)))", "(%b())"), P("match", "f(a(b)c)", "%w+(%b())"),
  P("match", "THE (quick) fox", "%f[%a]%a+"), P("match", "THE (quick) fox", "%f[%l]%a+"),
  P("gsub", "THE (quick) fox", "%f[%w]%w+", "<%0>"), P("gsub", "THE (quick) fox", "%f[%W]", "|"),
  P("gsub", "hello world", "%f[%a]%a+%f[%A]", "X"), P("match", "x", "%f"),
  P("match", "x", "%fa"), P("match", "x", "%f["), P("match", "x", "%f[a"),
  P("find", "abc", "%f[%z]"), P("find", "abc", "%f[^%z]"), P("find", "abc", "%f[a]"),
  P("find", "abc", "%f[c]"), P("find", "abc", "%f[%w]", 2), P("find", "a\0b", "%f[%z]"),
  P("gsub", "abc", "%f[^%z]", "^"), P("gsub", "abc", "%f[%z]", "$"),
  -- back-references and captures
  P("match", "aa", "(a)%1"), P("match", [[say "hi" 'x']], [[(["'])(.-)%1]]),
  P("match", "abccd", "(.)%1"), P("match", "a", "%1"), P("match", "a", "%0"),
  P("match", "aa", "(a%1)"), P("match", "a1", "()%1"), P("match", "abba", "(a)(b)%2%1"),
  P("match", "abcdefghii", "(a)(b)(c)(d)(e)(f)(g)(h)(i)%9"), P("match", "aa", "(a)%2"),
  P("match", "abab", "(ab)%1$"), P("match", "abc", "(a"), P("find", "abc", "(a"),
  P("match", "abc", "a)"), P("match", "abc", "((a)"), P("match", "abc", "())"),
  P("match", "abc", "(()"), P("match", "abc", ")"), P("match", "b", "a)"),
  P("match", rep("a", 32), rep("(a)", 32)), P("match", rep("a", 33), rep("(a)", 33)),
  P("match", "x", rep("()", 32)), P("match", "x", rep("()", 33)),
  P("find", rep("a", 40), rep("(a)", 32)), P("match", "abc", "()"),
  P("match", "abc", "()a()"), P("match", "abc", "(()a)"), P("match", "abc", "b()"),
  P("match", "hello", "(h)(e)"), P("match", "hello", ""), P("match", "hello", "x"),
  P("match", "key = value", "(%w+)%s*=%s*(%w+)"), P("match", "  trim  ", "^%s*(.-)%s*$"),
  P("match", "abc", ".", 2), P("match", "abc", ".", -1), P("match", "abc", ".", 10),
  P("match", "abc", "()", 4), P("match", "abc", "()", 5), P("match", "abc", "^b", 2),
  P("match", "abc", "b", 1, true), P("match", "a.c", ".", 1, true), P("match", nil, "x"),
  P("match", "x"), P("match", "x", "x", "y"), P("match", 123, "%d"),
  -- the recursion limit
  P("match", rep("a", 300), rep("a?", 198)), P("match", rep("a", 300), rep("a?", 199)),
  P("match", rep("a", 300), rep("a?", 200)), P("match", rep("a", 300), rep("a?", 201)),
  P("match", rep("a", 300), rep("a*", 199)), P("match", rep("a", 300), rep("a*", 200)),
  P("match", rep("a", 300), rep("a-", 199)), P("match", rep("a", 300), rep("a-", 200)),
  P("match", rep("a ", 201), rep("a+ ", 199)), P("match", rep("a ", 201), rep("a+ ", 200)), P("match", rep("a", 300), rep("a", 300)),
  P("match", "", rep(".-", 300)), P("match", "x", rep(".-", 300)),
  P("match", "a", rep("a?", 150) .. "b"), P("find", rep("a", 300), rep("a?", 250) .. "$"),
  P("match", "aaaa", rep("(a?", 20) .. rep(")", 20)), P("match", "b", rep("a?", 300) .. "b"),
  P("match", rep("a", 199), rep("%w?", 199)), P("match", rep("a", 250), rep("()a", 31) .. rep("a?", 170)),
  P("gsub", rep("a", 300), rep("a?", 200), "x"), P("gmatch", rep("a", 300), rep("a?", 200)),
  -- gsub with a string
  P("gsub", "hello world", "o", "0"), P("gsub", "hello", "", "-"), P("gsub", "hello", "l", "%%"),
  P("gsub", "hello", "l", "%0%0"), P("gsub", "hello", "(l)", "[%1]"), P("gsub", "hello", "l", "%1"),
  P("gsub", "hello", "l", "%2"), P("gsub", "hello", "(l)", "%2"), P("gsub", "hello", "l", "%"),
  P("gsub", "hello", "l", "%x"), P("gsub", "hello", "l", "a%"), P("gsub", "hello", "()", "%1"),
  P("gsub", "hello", "(l)()", "%2%1"), P("gsub", "hello", "l", "%\0"), P("gsub", "hello", "l", "a\0b"),
  P("gsub", "hello", "l", 5), P("gsub", "hello", "l", 5.5), P("gsub", "hello", "l"),
  P("gsub", "hello", "l", true), P("gsub", "hello", "l", "x", 1), P("gsub", "hello", "l", "x", 0),
  P("gsub", "hello", "l", "x", -1), P("gsub", "hello", "l", "x", 1.5), P("gsub", "hello", "l", "x", "2"),
  P("gsub", "hello", "l", "x", math.maxinteger), P("gsub", "hello", "l", "x", "y"),
  P("gsub", "abc", "^", "x"), P("gsub", "abc", "^a", "x"), P("gsub", "aaa", "^a", "x"),
  P("gsub", "abc", "$", "x"), P("gsub", "abc", "%w*", "x"), P("gsub", "abc", "b*", "-"),
  P("gsub", "", "", "x"), P("gsub", "", "x*", "y"), P("gsub", "a,b,,c", ",", ";"),
  P("gsub", "abc", "", "%0"), P("gsub", "abc", ".", "%0%0", 2), P("gsub", "abc", "(a", "x"),
  P("gsub", "abc", "(a", "%1"), P("gsub", "abc", "[", "x"), P("gsub", 12345, "3", "x"),
  P("gsub", "abc", 98, 99), P("gsub", nil, "x", "y"), P("gsub", "x", nil, "y"),
  P("gsub", "x", "x", nil, "bad"), P("gsub", "x", "x", {}, "bad"), P("gsub", words, "%s+", " "),
  P("gsub", words, "(%w+)", "<%1>"), P("gsub", words, "%w+", "%0 %0", 3),
  P("gsub", words, "(%w+) = (%w+)", "%2 = %1"), P("gsub", "x^y", "^", "z"),
  P("gsub", "abc", "%f[%w]", "|"), P("gsub", "a.b", ".", "%%"), P("gsub", "a b", " ", "%%%%"),
  P("gsub", "abc", "b", "%9"), P("gsub", "abc", "(b)", "%0-%1"),
  -- gmatch
  P("gmatch", "hello world from lua", "%a+"), P("gmatch", "k1=v1, k2=v2", "(%w+)=(%w+)"),
  P("gmatch", "abc", ""), P("gmatch", "abc", "()"), P("gmatch", "abc", "a*"),
  P("gmatch", "aaa", "^a"), P("gmatch", "^a^a", "^a"), P("gmatch", "abc", ".", 2),
  P("gmatch", "abc", ".", -1), P("gmatch", "abc", ".", 10), P("gmatch", "abc", "", 4),
  P("gmatch", "abc", "", 5), P("gmatch", "", ""), P("gmatch", "abc", "["),
  P("gmatch", "abc", nil), P("gmatch", "abc", "x", "y"), P("gmatch", "abc", "(a"),
  P("gmatch", "a,b,,c", "([^,]*)"), P("gmatch", "abc", "b*"), P("gmatch", "abc", ".-"),
  P("gmatch", "abc", "%f[%w]"), P("gmatch", "(a)(b)", "%b()"), P("gmatch", 1234, "%d"),
  P("gmatch", "abc", ".", 0), P("gmatch", "abc", ".", -10), P("gmatch", "ab", "()", math.mininteger),
  P("gmatch"), P("gmatch", "abc", "x", 1.5),
  -- methods and the libraries' names
  P("mfind", "hello", "l"), P("mfind", "hello", nil), P("mfind", "hello", "l", "x"),
  P("mmatch", "hello", "(h)(e)"), P("mmatch", "hello", {}), P("mgsub", "hello", "l", "L"),
  P("mgsub", "hello", "l", nil), P("mgsub", "hello", "l", "x", "y"), P("mgmatch", "a b c", "%a"),
  P("mgmatch", "a b c", "(%a)()"), P("pfind", nil, "x"), P("pfind", "x", "["),
  P("pgsub", "x", "x"), P("pgsub", "x", "x", "y", "z"), P("pfind", "abc", "b"),
}
for _, c in ipairs(hand) do
  if with_global_names or not c[1]:find("^p") then case(unpack(c, 1, c.n)) end
end

-- gsub with a table or a function
local t = { hello = "HI", world = false, l = 1, o = {}, h = "H", e = 2.5 }
local upper = setmetatable({}, { __index = function(_, k) return k:upper() end })
local fns = {
  function(...) return concat({ ... }, "|") end,
  function() return nil end, function() return false end, function() return 7 end,
  function() return {} end, function() return true end,
  function() error("boom") end, function() error({}) end,
  function(a) return a .. a end, function(...) return select("#", ...) end,
}
for _, p in ipairs({ "%w+", "l", "o", "(h)(e)", "()l", "(l)(l)", "", "x", "(a",
                     "[", "e" }) do
  case("gsub", "hello world", p, t)
  case("gsub", "hello world", p, upper)
  case("gsub", "hello world", p, t, 1)
  for _, f in ipairs(fns) do
    case("gsub", "hello world", p, f)
    case("gsub", "hello world", p, f, 2)
  end
end

-- ---- the random part: small patterns over small subjects ----

local state = seed or 1
local function rnd(n)
  state = (state * 1103515245 + 12345) % 2147483648
  return (state >> 8) % n + 1
end
local function pick(list) return list[rnd(#list)] end

local items = { "a", "b", "c", ".", "%a", "%d", "%s", "%w", "%p", "%A", "%D",
  "%S", "%W", "[ab]", "[^a]", "[a-c]", "[%d_]", "[^%s]", "[]]", "[a-]", "%b()",
  "%f[%w]", "%f[%W]", "%f[ab]", "%1", "%2", "%0", "(", "(", ")", ")", "()", "^",
  "$", "%", "[", "]", "-", "*", "+", "?", "%.", "%%", "%z", "_", "1", " ", "\0",
  "(a)", "(.-)", "(%w+)", "[%a%d]" }
local quants = { "", "", "", "*", "+", "-", "?" }
local subj_chars = { "a", "a", "b", "b", "c", "1", "2", " ", "_", "(", ")", ".",
  "%", "\0", "-", "^", "$", "[", "]", "A", "\n" }
local templates = { "x", "%0", "%1", "%2", "<%1>", "%%", "%", "", "%a", "[%0]",
  "%1%1" }
local tables = { { a = "A", b = false, ["1"] = "one", c = {} }, upper }
local inits = { 1, 2, 0, -1, -3, 5, 20 }
local ns = { 0, 1, 2, -1, 100 }

local function random_pattern()
  local out = {}
  for i = 1, rnd(8) do out[i] = pick(items) .. pick(quants) end
  return concat(out)
end
-- any string of these: malformed patterns too
local wild = { "(", ")", "%", "[", "]", "^", "$", "*", "+", "-", "?", ".", "a",
  "b", "f", "1", "2", "0", "%", "(", ")", "[", "]", "\0", "z", "w" }
local function wild_string(max)
  local out = {}
  for i = 1, rnd(max + 1) - 1 do out[i] = pick(wild) end
  return concat(out)
end
local function random_subject()
  local out = {}
  for i = 1, rnd(13) - 1 do out[i] = pick(subj_chars) end
  return concat(out)
end

local function long_case()
  local out = {}
  for i = 1, rnd(60) do out[i] = pick(subj_chars) end
  local p = {}
  for i = 1, rnd(3) do p[i] = pick(items) .. pick(quants) end
  p = concat(p)
  local which = rnd(4)
  if which == 1 then case("find", concat(out), p, pick(inits))
  elseif which == 2 then case("match", concat(out), p)
  elseif which == 3 then case("gmatch", concat(out), p)
  else case("gsub", concat(out), p, pick(templates)) end
end

for i = 1, nrandom or 0 do
  if i % 10 == 0 then long_case() end
  local s, p = random_subject(), random_pattern()
  local which = rnd(9)
  if which >= 7 then
    s = rnd(2) == 1 and wild_string(12) or s
    p = wild_string(10)
    local f = ({ "find", "match", "gmatch", "gsub" })[rnd(4)]
    if f == "gsub" then
      case(f, s, p, rnd(2) == 1 and wild_string(4) or pick(fns))
    else
      case(f, s, p, rnd(3) == 1 and pick(inits) or nil)
    end
  elseif which == 1 then
    case("find", s, p, rnd(3) == 1 and pick(inits) or nil,
         ({ nil, true, false })[rnd(3)])
  elseif which == 2 then
    case("match", s, p, rnd(3) == 1 and pick(inits) or nil)
  elseif which == 3 then
    case("gmatch", s, p, rnd(3) == 1 and pick(inits) or nil)
  elseif which == 4 then
    case("gsub", s, p, pick(templates), rnd(3) == 1 and pick(ns) or nil)
  elseif which == 5 then
    case("gsub", s, p, pick(tables))
  else
    case("gsub", s, p, pick(fns), rnd(4) == 1 and pick(ns) or nil)
  end
end

-- ---- long inputs: sets, needles, captures and replacements that cross
-- the matcher's 64-byte and 4096-byte steps ----

local function pieces(list, len)
  local out, n = {}, 0
  while n < len do
    local p = pick(list)
    out[#out + 1] = p
    n = n + #p
  end
  return concat(out)
end
local set_parts = { "a", "b", "q", "%d", "%a", "%W", "b-d", "x-", "-", "%]",
  "%%", "^", "[", "%-", "0-9", "\0", "\255", "z" }
for i = 1, 40 do
  local body = pieces(set_parts, 40 + rnd(200))
  local set = "[" .. (rnd(2) == 1 and "^" or "") .. body .. "]"
  local s = random_subject() .. random_subject() .. random_subject()
  case("find", s, set); case("gsub", s, set .. "+", "<%0>")
  case("match", s, "%f" .. set .. ".")
  case("gsub", s, "%f" .. set, "|")
  case("gsub", s, set .. "-" .. pick(items), "#")
  -- malformed: no ']', or an escape at the very end
  case("find", s, "[" .. body); case("find", s, "[" .. body .. "%")
  case("match", s, "%f[" .. body)
end
-- ranges and escapes on a 64-byte step's edge, and a first member ']'
for k = 58, 70 do
  local head = rep("q", k)
  for _, tail in ipairs({ "a-c]", "%a]", "%]]", "]", "-]", "b-]" }) do
    local set = "[" .. head .. tail
    for _, s in ipairs({ "b", "%", "]", "-", "a", "X", "q" }) do
      case("find", s, set); case("find", s, "[^" .. head .. tail)
    end
    case("find", "]x", "[]" .. head .. tail)
  end
end

local big = rep("ab", 2600) .. "c" .. rep("ab", 2600)
local needle = rep("ab", 2100) .. "c"
for _, init in ipairs({ 1, 2, 900, 4000, 4097, 5200, 5201, -10 }) do
  case("find", big, needle, init, true); case("find", big, needle, init)
  case("find", big, "c", init, true); case("find", big, "bc", init)
  case("find", big, rep("ab", 2100) .. "x", init, true)
end
for _, at in ipairs({ 4094, 4095, 4096, 4097, 4098, 8191, 8192, 8193 }) do
  local s = rep("x", at - 1) .. "yz" .. rep("x", 40)
  case("find", s, "yz", 1, true); case("find", s, "y"); case("find", s, "zx")
  case("find", s, rep("x", at - 1) .. "y", 1, true)
  case("find", s, rep("x", at - 1) .. "y")
  -- a special character past the pattern's first 4096 bytes
  case("find", s, rep("x", at - 1) .. ".")
  case("find", "xyz", rep("x", at) .. "(")
  case("find", rep("x", at + 2), rep("x", at) .. "%")
end
-- captures and back-references longer than 4096 bytes
local half = rep("abc", 1700)
for _, flip in ipairs({ 0, 1, 4095, 4096, 4097, 5000, #half }) do
  local other = flip == 0 and half or
    half:sub(1, flip - 1) .. "X" .. half:sub(flip + 1)
  local s = half .. other
  case("find", s, "^(.*)%1$")
  case("match", s, "^(" .. rep(".", 100) .. ".-)%1$")
  case("gsub", s, "^(" .. half .. ")%1", "=")
  case("find", half .. "!" .. other, "^([^!]*)!%1$")
end
-- long replacements: an escape on and around the 4096-byte step
for _, at in ipairs({ 1, 4094, 4095, 4096, 4097, 4098, 9000 }) do
  for _, esc in ipairs({ "%0", "%1", "%%", "%2", "%x", "%" }) do
    local r = rep("r", at - 1) .. esc .. rep("s", 30)
    case("gsub", "hello", "(l)", r); case("gsub", "hello", "l", r, 1)
    case("gsub", "hello", "(l)", rep("r", at - 1) .. esc)
  end
  case("gsub", "hello", "()", rep("w", at) .. "%1")
end
-- long matches kept or replaced, and long tails
local long = rep("a", 9000) .. "b" .. rep("c", 5000)
case("gsub", long, "^a", "x"); case("gsub", long, "a+", "%0%0")
case("gsub", long, "a+", {}); case("gsub", long, "a+", function() end)
case("gsub", long, "a+", function(s) return s .. s end)
case("gsub", long, "b", { b = rep("B", 5000) })
case("gsub", long, "c*$", "%%")
case("match", long, "(a*)b(c*)"); case("find", long, "()(a+)()b")
case("gmatch", long, "a-b"); case("gmatch", long, "%a+")

return descs, results
]==]

local SEED, NRANDOM = 20240611, 3000

describe("pattern matching in a policy", function()
  it("gives what string.find, match, gmatch and gsub give here", function()
    -- a sanitized build runs the cases many times slower
    local m = assert(tand.start{ min_number = 1, max_number = 9,
      callback_timeout = 60000,
      policy = function()
        return { handle_call = function(r)
          local run = assert(load(r[2], "=cases"))
          local _, results = run(r[3], r[4], false)
          return results
        end }
      end })
    m:settimeout(120000)
    local descs, want = assert(load(CASES, "=cases"))(SEED, NRANDOM, false)
    local got, err, detail = m:call("run", CASES, SEED, NRANDOM)
    m:stop()
    assert.is_table(got, tostring(err) .. " " .. tostring(detail))
    assert.is_true(#want > NRANDOM)
    assert.equal(#want, #got)
    for i = 1, #want do
      if got[i] ~= want[i] then
        assert.equal(want[i], got[i], "case " .. i .. ": " .. descs[i])
      end
    end
  end)

  -- Calls a policy that make() starts, with callback_timeout = 200 and a
  -- call that would run for seconds, and checks that the callback itself
  -- raised callback_timeout: the traceback shows it did, so its thread is
  -- free again (rather than the server being ended from outside while
  -- stuck). On a loaded machine the watchdog may end it from outside
  -- before its thread gets the core back, so up to three tries; a thread
  -- stuck for seconds never shows a traceback. other, a bystander
  -- server, still answers.
  local function assert_ends_itself(make, other, name)
    local detail
    for _ = 1, 3 do
      local m = make()
      m:settimeout(20000)
      local t0 = tand.now()
      local v, err
      v, err, detail = m:call(name)
      local took = tand.now() - t0
      assert.is_nil(v); assert.equal("server_crashed", err)
      assert.matches("callback_timeout", detail)
      assert.is_true(took >= 190, took)
      assert.is_true(took < 5000, took)
      assert.is_false(m:alive())
      if not detail:find("stuck outside Lua", 1, true) then break end
    end
    assert.matches("traceback", detail)
    assert.equal("still here", other:call("anything"))
  end

  local function bystander()
    return assert(tand.start{ min_number = 1, max_number = 9,
      policy = function()
        return { handle_call = function() return "still here" end }
      end })
  end

  -- Stock string.find would keep its thread for hours.
  it("ends a backtracking match with its callback at callback_timeout",
          function()
    local other = bystander()
    assert_ends_itself(function()
      return assert(tand.start{ min_number = 1, max_number = 9,
        callback_timeout = 200,
        policy = function()
          return { handle_call = function()
            return string.find(string.rep("a", 4000), ".-.-.-.-.-.-.-b")
          end }
        end })
    end, other, "find")
    other:stop()
  end)

  -- Where one step of the matcher's count once covered megabytes of work
  -- (an empty pattern's attempt with its 8 MB replacement scanned; a 20 MB
  -- set read twice for every subject byte), so that its deadline checks
  -- came more than 10 s apart and the callback outlived its deadline by
  -- that much.
  for _, name in ipairs({ "empty pattern, 8 MB replacement", "20 MB set" }) do
    it("ends a match at callback_timeout with " .. name, function()
      local other = bystander()
      local make = function() return assert(tand.start{ min_number = 1, max_number = 9,
        callback_timeout = 200,
        policy = function()
          return { handle_call = function(r)
            -- (big strings made of big pieces: string.rep copies a piece
            -- at a time, and that C call has no deadline of its own)
            if r[1] == "20 MB set" then
              return string.find(("b"):rep(3000),
                                 "[" .. ("a"):rep(1e4):rep(2e3) .. "]")
            end
            return string.gsub(("x"):rep(2000), "",
                               ("%0"):rep(4e3):rep(1e3))
          end }
        end }) end
      assert_ends_itself(make, other, name)
      other:stop()
    end)
  end
end)
