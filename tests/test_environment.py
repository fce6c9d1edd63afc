"""The project environment: GDAL >= 3.12 with every driver the workflow needs."""

from chunkindex.doctor import REQUIRED_DRIVERS, main, run_doctor


def test_doctor_is_green(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "OK: everything chunkindex needs is here" in out
    for driver in REQUIRED_DRIVERS:
        assert f"driver {driver:<11} present" in out


def test_gdal_version_and_raw_block_info(gdal):
    major, minor = (int(p) for p in gdal.__version__.split(".")[:2])
    assert (major, minor) >= (3, 12)
    assert hasattr(gdal.MDArray, "GetRawBlockInfo")


def test_doctor_reports_a_missing_driver(monkeypatch):
    import chunkindex.doctor as doctor

    monkeypatch.setattr(doctor, "REQUIRED_DRIVERS", ("Zarr", "NoSuchDriver"))
    report = run_doctor(gdal_only=True)
    assert not report.ok
    assert any("NoSuchDriver" in p for p in report.problems)
    assert doctor.main(["--gdal-only", "--quiet"]) == 1
