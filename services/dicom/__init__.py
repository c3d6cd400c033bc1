"""The DICOM service: receives studies from a PACS or scanner (C-STORE SCP), runs the pipelines their AE
title maps, and sends the DICOM results to destinations (C-STORE SCU). See docs/dicom.md."""

from __future__ import annotations

from services.dicom.service import DicomService
from shared.resources import Resources
from shared.server import Service, ServicerSet


async def build(resources: Resources) -> Service:
    path = resources.settings.dicom_config
    if path is None:
        raise ValueError("the dicom service needs a configuration: set CLARET_DICOM_CONFIG (docs/dicom.md)")
    dicom = DicomService(resources, path)
    return ServicerSet([], on_start=[dicom.start], on_stop=[dicom.stop], checks=[resources.db.problem])
