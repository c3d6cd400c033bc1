"""Run with the official nvidia-clara-client: every ModelsClient method against the Models service, on a
model the test uploaded (the client's own upload_model cannot build its request, see below). Prints one
JSON line: what each call returned, or the exception it raised (class and message).

ModelsClient 0.8.1.7 is broken in places before or after the wire, whatever the server: upload_model sets
ModelDetails fields the proto lacks (tags, model_type), download_model calls a stub method that does not
exist (Download), read_instance, update_instance, delete_instance and delete_model build wrong request
messages, update_catalog hands grpcio a list where it wants an iterator, and list_models and read_catalog
read a repeated field as one message (so they work only on an empty answer). The test records these.

usage: models_flow.py HOST:PORT MODEL_ID ARCHIVE
"""

import io
import json
import sys

from nvidia_clara import model_types
from nvidia_clara.models_client import ModelsClient

address, model_id, archive = sys.argv[1:]
host, port = address.rsplit(":", 1)
models = ModelsClient(target=host, port=port)
model = model_types.ModelId(value=model_id)
outcome = {}


def attempt(name, call):
    try:
        outcome[name] = {"ok": call()}
    except Exception as exc:  # the point is to record what the client raises
        outcome[name] = {"raised": type(exc).__name__, "message": str(exc)[:300]}


catalog = models.create_catalog()
outcome["create_catalog"] = {"ok": len(catalog.value)}
attempt("update_catalog", lambda: models.update_catalog(catalog, [model]))
attempt("read_catalog", lambda: [d.name for d in models.read_catalog(catalog) or []])
instance = models.create_instance()
outcome["create_instance"] = {"ok": len(instance.value)}
attempt("update_instance", lambda: models.update_instance(instance, [model]))
attempt("read_instance", lambda: [d.name for d in models.read_instance(instance) or []])
attempt("add_metadata", lambda: dict(models.add_metadata(model, {"owner": "clinic"})))
attempt("remove_metadata", lambda: dict(models.remove_metadata(model, ["owner"])))
attempt("list_models", lambda: [d.name for d in models.list_models() or []])
attempt("download_model", lambda: models.download_model(model, io.BytesIO()).name)
details = model_types.ModelDetails(model_id=model, name="again", model_type=model_types.ModelType.PyTorch)
with open(archive, "rb") as source:
    attempt("upload_model", lambda: models.upload_model(details, source))
attempt("delete_instance", lambda: models.delete_instance(instance))
attempt("delete_catalog", lambda: models.delete_catalog(catalog))
attempt("delete_model", lambda: models.delete_model(model))
attempt("read_deleted_catalog", lambda: models.read_catalog(catalog))
print(json.dumps(outcome))
