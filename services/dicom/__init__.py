"""The DICOM service: receives studies from a PACS or scanner (C-STORE SCP), runs the pipelines their AE
title maps, and sends the DICOM results to destinations (C-STORE SCU). See docs/dicom.md.

Besides DICOM it serves Claret's own gRPC API ``claret.dicom.Dicom`` (:mod:`services.dicom.servicer`): its
configuration, recent associations and exports, for ``claret dicom``."""

from __future__ import annotations

from protos.claret_api import dicom_pb2_grpc
from services.dicom.service import DicomService
from services.dicom.servicer import DicomServicer
from shared.resources import Resources
from shared.server import Service, ServicerSet

DICOM = "claret.dicom.Dicom"


async def build(resources: Resources) -> Service:
    path = resources.settings.dicom_config
    if path is None:
        raise ValueError("the dicom service needs a configuration: set CLARET_DICOM_CONFIG (docs/dicom.md)")
    dicom = DicomService(resources, path)
    servicer = DicomServicer(dicom, resources.db, resources.metrics)
    return ServicerSet(
        [(DICOM, servicer, dicom_pb2_grpc.add_DicomServicer_to_server)],
        on_start=[dicom.start],
        on_stop=[dicom.stop],
        checks=[resources.db.problem],
    )
