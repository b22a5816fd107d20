"""The budget of client connections that have not logged in yet: what it admits and whom it
makes room by closing. Bookkeeping only; the connection does the closing (frontend/connection.py).

Connections that have not authenticated cost a client nothing to open and keep (issue 16: 1,000
silent TCP connections from one address held every slot of limits.max_client_connections until
limits.auth_timeout, and no one could log in). So they have a smaller budget of their own:
- per address (limits.max_unauthenticated_per_address): a newcomer beyond it is refused (its
  own address is the one holding the others);
- overall (limits.max_unauthenticated_connections), and when all of
  limits.max_client_connections are taken: a newcomer is let in, and the oldest waiting
  connection of the address that has the most waiting is closed to make room. An address with
  many waiting connections loses them first; a client that logs in within the time it takes
  others to open that many connections always gets its turn. Only when every connection has
  logged in is a newcomer refused for max_client_connections.
"""

from __future__ import annotations

from collections import OrderedDict


class WaitingLogins:
    def __init__(self) -> None:
        # address -> its waiting connections, oldest first
        self._by_address: dict[str, OrderedDict[object, None]] = {}
        self._count = 0
        self.peak = 0  # the most waiting at once since start (for /metrics and tests)

    def __len__(self) -> int:
        return self._count

    def waiting(self, address: str) -> int:
        return len(self._by_address.get(address, ()))

    def add(self, connection: object, address: str, overall: int, per_address: int,
            full: bool = False) -> tuple[str | None, object | None]:
        """(why it is refused or None, the connection to close to make room for it or None).
        overall and per_address: the budgets, 0 for none; full: there is no room for another
        connection of any kind (limits.max_client_connections), so one that has not logged in
        makes room or the newcomer is refused."""
        mine = self._by_address.get(address)
        if per_address and mine is not None and len(mine) >= per_address:
            return "address", None
        evicted = None
        if full or (overall and self._count >= overall):
            oldest = self._oldest_of_busiest()
            if oldest is None:
                return "full", None
            evicted, evicted_address = oldest
            self.remove(evicted, evicted_address)
        self._by_address.setdefault(address, OrderedDict())[connection] = None
        self._count += 1
        self.peak = max(self.peak, self._count)
        return None, evicted

    def remove(self, connection: object, address: str) -> None:
        """The connection logged in or ended (again: nothing happens)."""
        mine = self._by_address.get(address)
        if mine is None or connection not in mine:
            return
        del mine[connection]
        self._count -= 1
        if not mine:
            del self._by_address[address]

    def _oldest_of_busiest(self) -> tuple[object, str] | None:
        """The oldest waiting connection of the address with the most waiting. One pass over
        the addresses that have waiting connections (at most the overall budget of them), made
        only when the budget is full."""
        if not self._by_address:
            return None
        address, mine = max(self._by_address.items(), key=lambda item: len(item[1]))
        return next(iter(mine)), address
