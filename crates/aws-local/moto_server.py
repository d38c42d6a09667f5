"""moto in server mode for the tests, with one change: cheaper DynamoDB transaction backups.

moto backs up every table a TransactWriteItems touches with copy.deepcopy, once per item, before
applying it: O(table size) per call, about 100 ms at a few thousand items and growing, and not
safe against requests served at the same time on other threads (it answered 500s); nor are its
other writes (two concurrent `ADD` updates of one item could lose one). Real DynamoDB has neither
problem. Here the backup copies the table's item maps but not the items, and DynamoDB writes run
one at a time. moto restores the backup when a transaction is cancelled; that
restores every put and delete, and an update only if it came before nothing that could fail. The
project's transactions put the conditional item first, so a cancelled one has changed nothing
but puts, and the emulator still checks every condition as DynamoDB does.
"""

import copy
import sys
import threading
import types

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models.table import Table
from moto.server import main

_lock = threading.RLock()


def _backup(obj, memo=None):
    if not isinstance(obj, Table):
        return copy.deepcopy(obj, memo)
    snapshot = copy.copy(obj)
    items = list(obj.items.items())  # one atomic copy under the GIL
    snapshot.items = type(obj.items)(dict)
    for key, value in items:
        snapshot.items[key] = dict(value) if isinstance(value, dict) else value
    return snapshot


dynamodb_models.copy = types.SimpleNamespace(deepcopy=_backup, copy=copy.copy)


def _serialize(name):
    original = getattr(dynamodb_models.DynamoDBBackend, name)

    def serialized(self, *args, **kwargs):
        with _lock:
            return original(self, *args, **kwargs)

    setattr(dynamodb_models.DynamoDBBackend, name, serialized)


def _copy_on_write(original):
    def update_item(self, table_name, key, *args, **kwargs):
        try:
            table = self.get_table(table_name)
            hash_value, range_value = self.get_keys_value(table, key)
            item = table.get_item(hash_value, range_value)
        except Exception:  # the original call reports what is wrong
            item = None
        if item is not None:
            fresh = copy.deepcopy(item)
            if range_value is None:
                table.items[hash_value] = fresh
            else:
                table.items[hash_value][range_value] = fresh
        return original(self, table_name, key, *args, **kwargs)

    return update_item


dynamodb_models.DynamoDBBackend.update_item = _copy_on_write(dynamodb_models.DynamoDBBackend.update_item)

for _name in ("transact_write_items", "put_item", "update_item", "delete_item", "batch_write_item"):
    if hasattr(dynamodb_models.DynamoDBBackend, _name):
        _serialize(_name)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
