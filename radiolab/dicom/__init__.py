"""DICOM CT ingest: find series, read them as HU volumes on regular grids, write NRRD and DICOM SEG.

Modules: :mod:`~radiolab.dicom.discovery` (find and group series, CT evidence, PHI-free
names), :mod:`~radiolab.dicom.stack` (tilt, uneven spacing and gaps onto a regular
grid; pure array functions), :mod:`~radiolab.dicom.series` (read one series),
:mod:`~radiolab.dicom.convert` (``ingest``) and :mod:`~radiolab.dicom.seg` (DICOM
Segmentation output; needs highdicom, imported only there).

Privacy
-------
Nothing that identifies the patient leaves these modules except a DICOM SEG, which must
carry the source's patient and study modules and is therefore written only on request.
Series names use the series number, the description and a hash of the grouping key;
``Volume.meta`` and the NRRD headers hold no patient, institution or folder name.
"""

from radiolab.dicom.convert import Failed, IngestReport, ingest, volume_header_fields
from radiolab.dicom.discovery import SeriesInfo, Skipped, find_series, series_name, uid_hash
from radiolab.dicom.series import ACQUISITION_KEYS, read_series, read_series_folder

__all__ = ["ACQUISITION_KEYS", "Failed", "IngestReport", "SeriesInfo", "Skipped", "find_series", "ingest",
           "read_series", "read_series_folder", "series_name", "uid_hash", "volume_header_fields"]
