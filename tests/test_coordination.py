"""Leases shared through the store: the forwarder runs where its lease is held, and runs again when a
process that lost the lease (its PostgreSQL session ended) wins it back."""

import asyncio
from pathlib import Path

import psycopg
from prometheus_client import CollectorRegistry

from tests.postgres import ADMIN_URL, fresh_database
from tests.support import wait_until_async
from thingport.bus.forwarder import CommitSignal, Forwarder
from thingport.runtime.bootstrap import build
from thingport.runtime.coordination import LeasedService
from thingport.settings import load_settings
from thingport.store.leases import FileLease, PostgresLease, claim_worker_id


def test_a_forwarder_that_lost_its_lease_with_its_session_runs_again_when_it_wins_it_back(data_dir: Path) -> None:
    url = fresh_database()
    app = build(load_settings(data_dir=data_dir, database_url=url))
    stores = app.stores
    rival = PostgresLease(url, "forwarder")

    async def main() -> list[bool]:
        stores.log.start(asyncio.get_running_loop())
        forwarder = Forwarder(stores.log, stores.registry, CollectorRegistry(), CommitSignal())
        lease = PostgresLease(url, "forwarder")
        service = LeasedService(lease, forwarder, "forwarder")
        await service.start()
        states = [service.running, await asyncio.to_thread(rival.try_acquire)]  # one holder at a time
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:  # the holder's session ends (a restart, say)
            ended = admin.execute(
                "SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.granted AND a.datname = %s", (url.rsplit("/", 1)[1],)
            ).fetchone()[0]
        states.append(ended == 1)
        seen: list[bool] = []

        def lost_then_won_back() -> bool:  # stopped, then started again on the same forwarder and metrics
            seen.append(service.running)
            return False in seen and service.running

        await wait_until_async(lost_then_won_back, "the lease lost, then won back", 6, 0.05)
        states.append(await asyncio.to_thread(lease.held))
        await service.stop()
        states.append(await asyncio.to_thread(rival.try_acquire))  # released on stop
        return states

    try:
        assert asyncio.run(main()) == [True, False, True, True, True]
    finally:
        rival.release()
        app.close()


def test_worker_numbers_are_leased_one_process_each(tmp_path: Path) -> None:
    first, second = FileLease(tmp_path, "worker"), FileLease(tmp_path, "worker")
    try:
        assert claim_worker_id(first, 5) == 5
        assert claim_worker_id(second, 5) == 6  # taken: the next free one
        first.release()
        assert claim_worker_id(FileLease(tmp_path, "worker"), 5) == 5
    finally:
        first.release()
        second.release()


def test_a_released_postgres_lease_can_be_taken_at_once_by_another_process() -> None:
    """A closed session's advisory locks are freed only once its backend has exited, some time after the
    client has gone (under load, after the next process has already tried): release must hand the lease
    over before it returns. The holder's session is kept alive past its close to stand for that moment."""
    url = fresh_database()
    holder, rival = PostgresLease(url, "forwarder"), PostgresLease(url, "forwarder")
    assert holder.try_acquire()
    session = holder._conn
    assert session is not None
    really_close = session.close
    session.close = lambda: None  # type: ignore[method-assign]  # the backend has not exited yet
    try:
        assert not rival.try_acquire()
        holder.release()
        assert rival.try_acquire()
    finally:
        really_close()
        rival.release()
