# scripts/bench_genserver.exs MS THREADS... - the Elixir anchor: a
# take-a-number GenServer (the number, and the last caller), called by
# THREADS processes for MS milliseconds each; then casts from 1 and 4
# senders (an Erlang mailbox is unbounded). Prints the same columns as
# bench_engine.
defmodule Ticket do
  use GenServer
  def init(n), do: {:ok, {n, nil}}
  def handle_call({:take, caller}, _from, {n, _}), do: {:reply, n, {n + 1, caller}}
  def handle_cast({:take, caller}, {n, _}), do: {:noreply, {n + 1, caller}}
end

defmodule Bench do
  def call_loop(pid, id, deadline, n, lat) do
    t0 = System.monotonic_time(:nanosecond)
    if t0 >= deadline do
      {n, lat}
    else
      GenServer.call(pid, {:take, id})
      call_loop(pid, id, deadline, n + 1, [System.monotonic_time(:nanosecond) - t0 | lat])
    end
  end

  def cast_loop(pid, id, deadline, n, lat) do
    t0 = System.monotonic_time(:nanosecond)
    if t0 >= deadline do
      {n, lat}
    else
      GenServer.cast(pid, {:take, id})
      cast_loop(pid, id, deadline, n + 1, [System.monotonic_time(:nanosecond) - t0 | lat])
    end
  end

  def phase(kind, threads, ms) do
    {:ok, pid} = GenServer.start_link(Ticket, 0)
    start = System.monotonic_time(:nanosecond)
    deadline = start + ms * 1_000_000
    fun = if kind == :call, do: &call_loop/5, else: &cast_loop/5
    tasks = for i <- 1..threads, do: Task.async(fn -> fun.(pid, i, deadline, 0, []) end)
    results = Task.await_many(tasks, :infinity)
    # casts count once the server has handled them all
    GenServer.call(pid, {:take, 0}, :infinity)
    elapsed = (System.monotonic_time(:nanosecond) - start) / 1.0e9
    total = Enum.sum(Enum.map(results, fn {n, _} -> n end))
    lat = results |> Enum.flat_map(fn {_, l} -> l end) |> Enum.sort() |> List.to_tuple()
    len = tuple_size(lat)
    pct = fn p -> elem(lat, min(len - 1, trunc(len * p))) / 1000 end
    name = if kind == :call, do: "genserver_call", else: "genserver_cast"
    f = fn x, w, d -> String.pad_leading(:erlang.float_to_binary(x / 1, decimals: d), w) end
    IO.puts(String.pad_trailing(name, 14) <> " " <>
              String.pad_leading(Integer.to_string(threads), 3) <> "  " <>
              f.(total / elapsed, 12, 0) <> "  " <> f.(pct.(0.5), 9, 2) <> "  " <>
              f.(pct.(0.99), 9, 2) <> "  " <> f.(pct.(0.999), 9, 2) <> "  0")
    GenServer.stop(pid)
  end
end

[ms | counts] = System.argv()
ms = String.to_integer(ms)
for c <- counts, do: Bench.phase(:call, String.to_integer(c), ms)
for c <- [1, 4], do: Bench.phase(:cast, c, ms)
