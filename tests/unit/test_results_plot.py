"""metrics.py: metrics.csv has a column per class's AP; the results plot is a screen-sized PNG
whose epoch axis makes sense for one epoch too."""

import csv
import io

from PIL import Image

from ssd_sagemaker.metrics import EpochLog, csv_table, results_plot


def _row(epoch, per_class=None, validated=True):
    return {"epoch": epoch, "cross_entropy": 3.0 - epoch, "smooth_l1": 1.0,
            "validation_map": 0.5 if validated else None,
            "validation_map_area": 0.55 if validated else None,
            "validation_ap_per_class": per_class, "learning_rate": 0.001,
            "images_per_second": 2.5, "seconds": 10.0}


def test_the_csv_has_a_column_per_class_and_jsonl_the_mapping(tmp_path):
    log = EpochLog(tmp_path)
    log.record(_row(0, {"circle": 0.25, "square": 0.5}))
    log.record(_row(1, {"circle": 0.75, "triangle": 1.0}))
    log.record(_row(2, validated=False))
    log.write()
    rows = list(csv.DictReader(io.StringIO((tmp_path / "metrics.csv").read_text())))
    assert [r["ap_circle"] for r in rows] == ["0.25", "0.75", ""]
    assert [r["ap_triangle"] for r in rows] == ["", "1.0", ""]
    assert "validation_ap_per_class" not in rows[0]
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert '"validation_ap_per_class": {"circle": 0.25, "square": 0.5}' in lines[0]
    assert csv_table([]).strip().startswith("epoch,cross_entropy")


def test_the_plot_is_screen_sized_with_whole_epochs():
    from matplotlib import pyplot

    image = Image.open(io.BytesIO(results_plot([_row(0, {"circle": 0.5})])))
    assert image.format == "PNG" and image.size == (1200, 700)
    figures = []
    original = pyplot.subplots

    def keep(*args, **kwargs):
        figure, axes = original(*args, **kwargs)
        figures.append(axes)
        return figure, axes

    pyplot.subplots = keep
    try:
        results_plot([_row(0)])
    finally:
        pyplot.subplots = original
    for axis in figures[0].flat:
        assert axis.get_xlim() == (-0.5, 0.5)
        assert [t for t in axis.get_xticks() if -0.5 <= t <= 0.5] == [0]
    titles = [axis.get_title() for axis in figures[0].flat]
    assert titles == ["training loss", "validation mAP", "learning rate", "training throughput"]
