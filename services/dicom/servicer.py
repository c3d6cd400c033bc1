"""Claret's DICOM API (``claret.dicom.Dicom``, protos/claret_api/dicom.proto): what the DICOM service is
configured to do and what it did lately, for ``claret dicom`` on another machine.

A thin translation: the configuration in force and the SCP's port from :class:`DicomService`, recent rows from
:mod:`services.dicom.tables`. These messages have no Clara ``ResponseHeader`` to carry a refusal, so a refusal is
a gRPC status instead: INVALID_ARGUMENT naming the field, INTERNAL (logged with its traceback) for anything
unexpected. Calls are logged and counted as every RPC is (:mod:`shared.wire`); their ``code`` is 0, or the
negative gRPC status number when they failed (-3 INVALID_ARGUMENT, -13 INTERNAL).
"""

from __future__ import annotations

import dataclasses

from protos.claret_api import dicom_pb2 as pb
from protos.claret_api import dicom_pb2_grpc
from services.dicom import tables
from services.dicom.config import AeTitle
from services.dicom.service import ConfigState, DicomService
from shared.db import Database
from shared.metrics import Metrics
from shared.wire import Context, Servicer, answered, rows_wanted


def status(state: ConfigState, scp_port: int) -> pb.DicomStatusResponse:
    config = state.config
    return pb.DicomStatusResponse(
        config_path=str(state.path),
        loaded=state.loaded,
        problem=state.problem or "",
        scp_port=scp_port,
        scu_ae_title=config.scu_ae_title,
        ae_titles=[ae_title(entry) for entry in config.ae_titles],
        sources=[pb.DicomSource(ae_title=s.ae_title, host=s.host or "") for s in config.sources],
        destinations=[
            pb.DicomDestination(name=d.name, ae_title=d.ae_title, host=d.host, port=d.port) for d in config.destinations
        ],
    )


def ae_title(entry: AeTitle) -> pb.DicomAeTitle:
    return pb.DicomAeTitle(
        ae_title=entry.ae_title,
        name=entry.name,
        pipelines=[pb.DicomPipeline(key=key, ref=ref) for key, ref in entry.pipelines],
        priority=entry.priority,
        grouping=entry.grouping,
        timeout=entry.timeout,
        sources=entry.sources,
        export_operators=entry.export.operators if entry.export else (),
        export_destinations=entry.export.destinations if entry.export else (),
        ignored_sop_classes=sorted(entry.ignored_sop_classes),  # a set: sorted, so answers are stable
    )


def association(row: tables.AssociationRow) -> pb.DicomAssociation:
    """Every column, by name: a column the message lacks fails loudly rather than going missing."""
    return pb.DicomAssociation(**dataclasses.asdict(row))


EXPORT_COLUMNS_NOT_SENT = frozenset({"payload_id", "called"})
"""The exporter's join columns: the job says them already (and recent_exports leaves them empty)."""


def export(row: tables.ExportRow) -> pb.DicomExport:
    """Every column but :data:`EXPORT_COLUMNS_NOT_SENT`, by name, as for :func:`association`."""
    columns = dataclasses.asdict(row)
    return pb.DicomExport(**{key: value for key, value in columns.items() if key not in EXPORT_COLUMNS_NOT_SENT})


class DicomServicer(Servicer, dicom_pb2_grpc.DicomServicer):
    def __init__(self, dicom: DicomService, db: Database, metrics: Metrics) -> None:
        super().__init__(metrics)
        self._dicom = dicom
        self._db = db

    @answered
    async def Status(self, request: pb.DicomStatusRequest, context: Context) -> pb.DicomStatusResponse:
        return status(self._dicom.state, self._dicom.port)

    @answered
    async def ListAssociations(
        self, request: pb.DicomListRequest, context: Context
    ) -> pb.DicomListAssociationsResponse:
        limit = rows_wanted(request.limit)
        rows = await self._db.read(lambda conn: tables.recent_associations(conn, limit))
        return pb.DicomListAssociationsResponse(associations=[association(row) for row in rows])

    @answered
    async def ListExports(self, request: pb.DicomListRequest, context: Context) -> pb.DicomListExportsResponse:
        limit = rows_wanted(request.limit)
        rows = await self._db.read(lambda conn: tables.recent_exports(conn, limit))
        return pb.DicomListExportsResponse(exports=[export(row) for row in rows])
