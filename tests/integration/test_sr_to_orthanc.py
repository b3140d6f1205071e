"""The analysis SR (TID 1500 Comprehensive 3D SR) sent to a real PACS, Orthanc, by C-STORE and read back.

Orthanc and dcmtk are Debian packages (tests/integration/orthanc.py starts a throwaway Orthanc).
The SR holds the chest_ctr result computed in process on the real PA chest CR RG1_UNCI.dcm
(pydicom-data). It is sent twice: by our pynetdicom SCU (radcds_devstack.storescu) and by
dcmtk's storescu, an independent peer; then fetched back from Orthanc's REST API and read with
pydicom and dcmtk's dsrdump.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import httpx
import pydicom
import pytest

from radcds_devstack.samples import chest_cr, part10
from radcds_devstack.storescu import c_store
from radcds_devstack.testing import model_code
from radcds_inference.adapters.dicom.sr import part10_bytes
from radcds_inference.adapters.triton.manifest import load_manifest

from .orthanc import OrthancServer

pytestmark = [pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]

if shutil.which("Orthanc") is None and not Path("/usr/sbin/Orthanc").exists():
    pytest.skip("Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)", allow_module_level=True)


def _chest_sr():
    """The service's own pipeline with the chest_ctr numeric core in process (no Triton needed here)."""
    import numpy as np

    from radcds_inference.domain.study import InstanceLocator, SeriesLocator
    from radcds_inference.handlers import InferenceService

    module = model_code(ROOT / "models", "chest_ctr")
    ds = chest_cr()
    data = part10(ds)

    class Models:
        async def infer(self, model, version, inputs, outputs):
            results = [module.measure_ctr(i) for i in inputs["IMAGE"]]
            return {
                "STATUS": np.array([[r.status] for r in results], np.int32),
                "MEASUREMENTS": np.stack([r.measurements((0.0, 0.0)) for r in results]),
                "LOCATIONS": np.stack([r.locations() for r in results]),
            }

    class Web:
        async def retrieve_instance(self, url):
            return data

    service = InferenceService(manifest=load_manifest(ROOT / "models"), models=Models(), dicomweb=Web(), publisher=None)
    series = SeriesLocator(ds.SeriesInstanceUID, "CR", (InstanceLocator(ds.SOPInstanceUID, ds.SOPClassUID, "u"),))
    (result,) = asyncio.run(service.analyse_series(ds.StudyInstanceUID, series, service.entries()))
    return result


def test_sr_c_stored_to_orthanc_reads_back_with_the_ctr(tmp_path: Path):
    result = _chest_sr()
    sr = result.report
    ctr = next(m for m in result.analysis.measurements if m.code.code == "cardiothoracic-ratio")
    with OrthancServer(tmp_path / "orthanc") as orthanc:
        status = c_store(sr, host=orthanc.host, port=orthanc.dicom_port, called_aet=orthanc.aet)
        assert status == 0x0000
        found = httpx.post(
            f"{orthanc.url}/tools/find",
            json={"Level": "Instance", "Query": {"SOPInstanceUID": sr.SOPInstanceUID}},
            timeout=10,
        ).json()
        assert len(found) == 1
        stored = httpx.get(f"{orthanc.url}/instances/{found[0]}/file", timeout=10).content
        path = tmp_path / "from-orthanc.dcm"
        path.write_bytes(stored)
        back = pydicom.dcmread(path)
        assert back.SOPClassUID == sr.SOPClassUID and back.StudyInstanceUID == sr.StudyInstanceUID
        if shutil.which("dsrdump"):
            dump = subprocess.run(["dsrdump", "+Pl", str(path)], capture_output=True, text=True, check=True).stdout
            assert f'"{ctr.value}" ({{ratio}},UCUM' in dump
            assert "NOT FOR DIAGNOSTIC USE" in dump


@pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk's storescu is not installed")
def test_sr_sent_by_dcmtk_storescu_is_accepted_by_orthanc(tmp_path: Path):
    sr = _chest_sr().report
    path = tmp_path / "sr.dcm"
    path.write_bytes(part10_bytes(sr))
    with OrthancServer(tmp_path / "orthanc") as orthanc:
        # --required: propose the file's own SOP Class; dcmtk 3.6.7's default list lacks Comprehensive 3D SR.
        subprocess.run(
            ["storescu", "--required", "-aec", orthanc.aet, orthanc.host, str(orthanc.dicom_port), str(path)],
            check=True,
            capture_output=True,
            timeout=60,
        )
        instances = httpx.get(f"{orthanc.url}/instances", timeout=10).json()
        assert len(instances) == 1
        tags = httpx.get(f"{orthanc.url}/instances/{instances[0]}/simplified-tags", timeout=10).json()
        assert tags["SOPInstanceUID"] == sr.SOPInstanceUID and tags["Modality"] == "SR"
