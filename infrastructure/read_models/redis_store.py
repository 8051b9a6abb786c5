"""The Redis view store: every batch and its position written by one Lua script, atomically.

Keys: ``<prefix><name>:v<version>:<view key>``; positions ``<prefix><name>:v<version>:position:<leader>``;
the serving version ``<prefix><name>:serving``; a rebuild in progress ``<prefix><name>:rebuild`` (a
hash: version, code_version). Ops travel as one compact JSON array (decoded in Lua
with cjson): ``["h",key,f1,v1,...]`` set fields, ``["c",key,field,equals,f1,v1,...]`` set fields if,
``["z",key,score,member]`` add to index, ``["r",key,member]`` remove from index, ``["l",key,value]``
append, ``["m",index,prefix,source]`` copy a hash onto every member's hash. The script checks every touched key's type before writing, so a bad batch changes nothing,
and refuses a batch for a version older than the serving one (retired by a rebuild). Each batch
applied is announced on the channel ``<prefix>changes`` (``{"n": name, "v": version, "l": leader,
"p": position, "k": [view keys written]}``), a switch of serving version as ``{"reset": name}``: the
read API's processes keep their caches and waiters by it (``watch``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import Any

import redis
from redis.exceptions import NoScriptError

from infrastructure.resilience import Backoff
from projections.ops import (
    AddToIndex,
    AppendToList,
    CopyToMembers,
    Op,
    RemoveFromIndex,
    RemoveFromList,
    SetFields,
    SetFieldsIf,
)
from projections.store import INF, ChangeWatcher, RebuildTarget, ServingRead, ViewChange

log = logging.getLogger(__name__)

APPLY_SCRIPT = """
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
if stored >= tonumber(ARGV[2]) or (ARGV[3] ~= '' and stored ~= tonumber(ARGV[3])) then return 0 end
if tonumber(ARGV[5]) < tonumber(redis.call('GET', KEYS[2]) or '0') then return 0 end
local ns, ops, seen, touched, told = ARGV[1], cjson.decode(ARGV[4]), {}, {}, {}
local function touch(key)
  if told[key] == nil then told[key] = true; touched[#touched + 1] = key end
end
local kinds = {h='hash', c='hash', z='zset', r='zset', l='list', d='list', m='zset'}
local function fits(key, want)
  if seen[key] == nil then
    local has = redis.call('TYPE', key).ok
    if has ~= 'none' and has ~= want then return 'WRONGTYPE ' .. key .. ' is a ' .. has end
    seen[key] = want
  elseif seen[key] ~= want then return 'WRONGTYPE ' .. key .. ' used as two types' end
  return nil
end
for i = 1, #ops do
  local key, want = ns .. ops[i][2], kinds[ops[i][1]]
  if want == nil then return redis.error_reply('ERR unknown view op ' .. tostring(ops[i][1])) end
  local wrong = fits(key, want)
  if wrong == nil and ops[i][1] == 'm' then
    wrong = fits(ns .. ops[i][4], 'hash')
    local members = redis.call('TYPE', key).ok == 'zset' and redis.call('ZRANGE', key, 0, -1) or {}
    for j = 1, #members do wrong = wrong or fits(ns .. ops[i][3] .. members[j], 'hash') end
  end
  if wrong ~= nil then return redis.error_reply(wrong) end
end
for i = 1, #ops do
  local op = ops[i]
  local kind, key = op[1], ns .. op[2]
  if kind ~= 'm' then touch(op[2]) end
  if kind == 'h' then redis.call('HSET', key, unpack(op, 3))
  elseif kind == 'z' then redis.call('ZADD', key, op[3], op[4])
  elseif kind == 'l' then redis.call('RPUSH', key, op[3])
  elseif kind == 'd' then redis.call('LREM', key, 0, op[3])
  elseif kind == 'r' then redis.call('ZREM', key, op[3])
  elseif kind == 'm' then
    local fields = redis.call('HGETALL', ns .. op[4])
    if #fields > 0 then
      local members = redis.call('ZRANGE', key, 0, -1)
      for j = 1, #members do
        redis.call('HSET', ns .. op[3] .. members[j], unpack(fields))
        touch(op[3] .. members[j])
      end
    end
  elseif redis.call('HGET', key, op[3]) == op[4] then redis.call('HSET', key, unpack(op, 5))
  end
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[6], cjson.encode({n = ARGV[7], v = tonumber(ARGV[5]), l = ARGV[8], p = tonumber(ARGV[2]),
                                             k = touched}))
return 1
"""
APPLY_SHA = hashlib.sha1(APPLY_SCRIPT.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1
READ_SCRIPT = """
local version = redis.call('GET', KEYS[1])
if not version or tonumber(version) == 0 then version = ARGV[1] end
local ns = ARGV[2] .. version .. ':'
local positions = {}
for i = 4, #ARGV do positions[#positions + 1] = redis.call('GET', ns .. 'position:' .. ARGV[i]) or '0' end
return {version, redis.call('HGETALL', ns .. ARGV[3]), positions}
"""
"""``read_serving``: the serving version, the hash and that version's positions in one atomic call.
The view and position keys depend on the serving version, so they are built in the script rather
than declared: fine on one Redis (ours), not on Redis Cluster."""
READ_SHA = hashlib.sha1(READ_SCRIPT.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1
POSITION = "position:"
FEED_WAKE_SECONDS = 5.0
"""The change feed's subscriber wakes this often when nothing is announced (to see that it must stop)."""
DELETE_BATCH = 500


class RedisViewStore:
    """A ``ViewStore`` over a synchronous redis-py client (the runner is a thread)."""

    db_system = "redis"
    """Names the runner's batch spans (``redis.apply_batch``)."""

    def __init__(self, client: redis.Redis, prefix: str = "clinic:views:") -> None:
        if not client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("RedisViewStore needs a client made with decode_responses=True")
        self.client = client
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str, prefix: str = "clinic:views:", *, ca_file: Path | None = None,
                 cert_file: Path | None = None, key_file: Path | None = None) -> RedisViewStore:
        """A store with its own client (``redis://host:port/db``, or ``rediss://`` for TLS).

        With ``rediss://``: the server is verified against ``ca_file`` (else the system's CAs)
        and host name; ``cert_file``/``key_file`` are the client certificate (Redis
        ``tls-auth-clients yes``). redis-py's own query parameters (``ssl_ca_certs=...``) work too.
        """
        tls = {"ssl_ca_certs": ca_file, "ssl_certfile": cert_file, "ssl_keyfile": key_file}
        options = {name: str(path) for name, path in tls.items() if path is not None}
        if options and not url.startswith("rediss://"):
            raise ValueError("a CA or client certificate for Redis needs a rediss:// URL")
        return cls(redis.Redis.from_url(url, decode_responses=True, **options), prefix)

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()

    def apply(self, name: str, version: int, leader: str, last_notification_id: int, ops: Sequence[Op],
              expected_position: int | None = None) -> bool:
        """Apply ``ops`` and move the position in one script, or refuse (see ``ViewStore.apply``)."""
        args = self._script_args(name, version, leader, last_notification_id, ops, expected_position)
        try:
            return bool(self.client.evalsha(APPLY_SHA, 2, *args))
        except NoScriptError:
            return bool(self.client.eval(APPLY_SCRIPT, 2, *args))  # loads it for the next EVALSHA

    @contextmanager
    def deferred(self) -> Iterator[Callable[..., Callable[[], bool]]]:
        """A ``send`` taking ``apply``'s arguments that writes the script call on one connection and
        returns a reader of its reply, so the caller decodes the next batch while Redis runs this one.

        Read replies in the order sent. A connection left with unread replies is closed, not reused.
        """
        pool = self.client.connection_pool
        connection = pool.get_connection()
        pending = [0]

        def send(*apply_args: Any) -> Callable[[], bool]:
            args = self._script_args(*apply_args)
            connection.send_command("EVALSHA", APPLY_SHA, 2, *args, check_health=False)  # no PING mid-stream
            pending[0] += 1

            def reply() -> bool:
                if not answer:
                    pending[0] -= 1
                    try:
                        answer.append(bool(connection.read_response()))
                    except NoScriptError:  # not run: run it now (a later batch waits on its expected position)
                        answer.append(bool(self.client.eval(APPLY_SCRIPT, 2, *args)))
                return answer[0]

            answer: list[bool] = []
            return reply

        try:
            yield send
        finally:
            if pending[0]:
                connection.disconnect()
            pool.release(connection)

    def position(self, name: str, version: int, leader: str) -> int:
        """The last notification id of ``leader`` applied (0: none)."""
        return int(self.client.get(self._ns(name, version) + POSITION + leader) or 0)

    def get_fields(self, name: str, version: int, key: str) -> dict[str, str]:
        """The hash at ``key`` (``{}`` if absent)."""
        return _fields(self.client.hgetall(self._ns(name, version) + key))

    def watch(self, watcher: ChangeWatcher) -> Callable[[], None]:
        """Tell ``watcher`` of the changes announced on ``<prefix>changes``, from a thread of its own that
        subscribes again (with backoff) after a lost connection: ``lost`` then, ``reset`` once back."""
        stop = threading.Event()
        thread = threading.Thread(target=self._feed, args=(watcher, stop), name="view-changes", daemon=True)
        thread.start()

        def stopping() -> None:
            stop.set()
            thread.join(timeout=FEED_WAKE_SECONDS + 2)

        return stopping

    def _feed(self, watcher: ChangeWatcher, stop: threading.Event) -> None:
        backoff = Backoff()
        while not stop.is_set():
            pubsub = self.client.pubsub()
            try:
                pubsub.subscribe(self.changes_channel)
                while not stop.is_set():
                    message = pubsub.get_message(timeout=FEED_WAKE_SECONDS)  # wakes to see ``stop``
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        watcher.reset()
                        backoff.reset()
                    elif message["type"] == "message":
                        _tell(watcher, message["data"])
            except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
                log.warning("the read models' change feed was lost (%s); subscribing again in %.1fs", error, backoff.delay)
                watcher.lost()
            finally:
                pubsub.close()
            stop.wait(backoff.next())

    @property
    def changes_channel(self) -> str:
        return f"{self.prefix}changes"

    def read_serving(self, name: str, default_version: int, key: str, leaders: Sequence[str]) -> ServingRead:
        """The serving version's hash at ``key`` and its positions for ``leaders``: one EVALSHA."""
        args: tuple[str | int, ...] = (self._serving(name), default_version, f"{self.prefix}{name}:v", key, *leaders)
        try:
            version, flat, positions = self.client.evalsha(READ_SHA, 1, *args)
        except NoScriptError:
            version, flat, positions = self.client.eval(READ_SCRIPT, 1, *args)  # loads it for the next EVALSHA
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        return ServingRead(int(version), fields, {leader: int(p) for leader, p in zip(leaders, positions, strict=True)})

    def get_many_fields(self, name: str, version: int, keys: Sequence[str]) -> list[dict[str, str]]:
        """The hashes at ``keys``, in order, in one pipelined round trip."""
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(self._ns(name, version) + key)
        return [dict(fields) for fields in pipe.execute()]

    def range_by_score(self, name: str, version: int, key: str, min: float = -INF, max: float = INF,  # noqa: A002
                       reverse: bool = False, offset: int = 0, count: int | None = None) -> list[tuple[str, float]]:
        """Members scored within [min, max] (ZRANGEBYSCORE / ZREVRANGEBYSCORE with LIMIT)."""
        start, num = (None, None) if offset == 0 and count is None else (offset, -1 if count is None else count)
        full = self._ns(name, version) + key
        if reverse:
            return _scored(self.client.zrevrangebyscore(full, max, min, start=start, num=num, withscores=True))
        return _scored(self.client.zrangebyscore(full, min, max, start=start, num=num, withscores=True))

    def list_items(self, name: str, version: int, key: str, start: int = 0, stop: int = -1) -> list[str]:
        """Items ``start``..``stop`` inclusive (LRANGE)."""
        return [_text(item) for item in self.client.lrange(self._ns(name, version) + key, start, stop)]

    def serving_version(self, name: str) -> int | None:
        """The version readers of ``name`` use."""
        value = self.client.get(self._serving(name))
        return None if value is None else int(value)

    def set_serving_version(self, name: str, version: int) -> None:
        """Switch readers of ``name`` to ``version`` (one SET), and announce it."""
        self.client.set(self._serving(name), version)
        self.client.publish(self.changes_channel, json.dumps({"reset": name}))

    def rebuild_target(self, name: str) -> RebuildTarget | None:
        """The rebuild of ``name`` in progress (``None``: none)."""
        fields = self.client.hgetall(f"{self.prefix}{name}:rebuild")
        return RebuildTarget(int(fields["version"]), int(fields["code_version"])) if fields else None

    def set_rebuild_target(self, name: str, target: RebuildTarget | None) -> None:
        """Record the rebuild of ``name`` in progress (``None``: forget it)."""
        key = f"{self.prefix}{name}:rebuild"
        if target is None:
            self.client.delete(key)
        else:
            self.client.hset(key, mapping={"version": target.version, "code_version": target.code_version})

    def delete_version(self, name: str, version: int) -> int:
        """SCAN this version's keys and UNLINK them in batches; returns how many went."""
        deleted, batch = 0, []
        for key in self._scan(name, version):
            batch.append(key)
            if len(batch) >= DELETE_BATCH:
                deleted += self.client.unlink(*batch)
                batch = []
        return deleted + (self.client.unlink(*batch) if batch else 0)

    def dump(self, name: str, version: int) -> dict[str, Any]:
        """Every view key of this version and its value (see ``ViewStore.dump``)."""
        ns = self._ns(name, version)
        keys = sorted(k for k in self._scan(name, version) if not k.startswith(ns + POSITION))
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.type(key)
        readers = {"hash": self.client.hgetall, "list": lambda k: self.client.lrange(k, 0, -1),
                   "zset": lambda k: _scored(self.client.zrange(k, 0, -1, withscores=True))}
        return {key[len(ns):]: readers[kind](key) for key, kind in zip(keys, pipe.execute(), strict=True)
                if kind in readers}

    def _script_args(self, name: str, version: int, leader: str, last_notification_id: int, ops: Sequence[Op],
                     expected_position: int | None = None) -> tuple[Any, ...]:
        ns = self._ns(name, version)
        return (ns + POSITION + leader, self._serving(name), ns, last_notification_id,
                "" if expected_position is None else expected_position, encode_ops(ops), version,
                self.changes_channel, name, leader)

    def _scan(self, name: str, version: int) -> Iterator[str]:
        return self.client.scan_iter(match=glob_escape(self._ns(name, version)) + "*", count=1000)

    def _serving(self, name: str) -> str:
        return f"{self.prefix}{name}:serving"

    def _ns(self, name: str, version: int) -> str:
        return f"{self.prefix}{name}:v{version}:"


def _tell(watcher: ChangeWatcher, data: str) -> None:
    """Hand one announcement to ``watcher`` (one it cannot read is a reset: nothing is trusted blindly)."""
    try:
        message = json.loads(data)
        if "reset" in message:
            watcher.reset()
            return
        keys = message["k"]
        watcher.changed(ViewChange(message["n"], int(message["v"]), message["l"], int(message["p"]),
                                   tuple(keys) if isinstance(keys, list) else ()))
    except (ValueError, KeyError, TypeError):
        log.warning("an unreadable read-model change announcement: %.200s", data)
        watcher.reset()


def _text(reply: bytes | str) -> str:
    """A reply of the store's client: text (``decode_responses=True``), bytes only as redis-py types it."""
    return reply if isinstance(reply, str) else reply.decode()


def _fields(reply: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    """An HGETALL reply as text fields."""
    return {_text(field): _text(value) for field, value in reply.items()}


def _scored(reply: Iterable[bytes | str | tuple[bytes | str, Any] | list[Any]]) -> list[tuple[str, float]]:
    """A WITHSCORES reply (pairs in RESP2, two-item lists in RESP3) as (member, score) pairs."""
    pairs = []
    for item in reply:
        if isinstance(item, bytes | str):
            raise TypeError("a sorted-set reply without scores")
        member, score = item
        pairs.append((_text(member), float(score)))
    return pairs


def encode_ops(ops: Sequence[Op]) -> str:
    """The batch as the JSON array the script decodes (an unknown op raises before anything is sent)."""
    encoded: list[list[str]] = []
    for op in ops:
        if type(op) is SetFields:
            if op.fields:
                encoded.append(["h", op.key, *_flat(op.fields)])
        elif type(op) is AddToIndex:
            if op.score != op.score:
                raise ValueError(f"NaN score for {op.member!r} in {op.key!r}")  # Redis would fail mid-script
            encoded.append(["z", op.key, repr(float(op.score)), op.member])
        elif type(op) is AppendToList:
            encoded.append(["l", op.key, op.value])
        elif type(op) is RemoveFromList:
            encoded.append(["d", op.key, op.value])
        elif type(op) is RemoveFromIndex:
            encoded.append(["r", op.key, op.member])
        elif type(op) is SetFieldsIf:
            if op.fields:
                encoded.append(["c", op.key, op.field, op.equals, *_flat(op.fields)])
        elif type(op) is CopyToMembers:
            encoded.append(["m", op.index, op.prefix, op.source])
        else:
            raise TypeError(f"not a view op: {op!r}")
    return json.dumps(encoded, separators=(",", ":"))


def _flat(fields: dict[str, str]) -> list[str]:
    return list(chain.from_iterable(fields.items()))  # values are strings (see ops.SetFields)


def glob_escape(text: str) -> str:
    """``text`` matched literally by a SCAN MATCH pattern."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)
