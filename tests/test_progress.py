"""Progress reports of the pixel-by-pixel samplers (genzoo.progress): in order, per thread, and able to stop them."""

import threading

import pytest
import torch

import genzoo
from genzoo import progress


class Stop(Exception):
    pass


def reports(model, **options):
    heard = []
    with progress.reporting(lambda done, total: heard.append((done, total))):
        model.sample(2, **options)
    return heard


@pytest.mark.parametrize("name", ["markov", "fvsbn", "nade", "rnade"])
def test_sequential_samplers_report_every_pixel_in_order(name):
    model = genzoo.create(name, (1, 4, 5)).eval()
    assert reports(model) == [(d, 20) for d in range(1, 21)]


@pytest.mark.parametrize("method", ["fast", "naive"])
def test_pixelrnn_samplers_report_rows_or_pixels_in_order(method):
    model = genzoo.create("pixelcnn", (1, 4, 5), layers=1, hidden=4, head=8).eval()
    heard = reports(model, method=method)
    total = 4 if method == "fast" else 20
    assert heard == [(d, total) for d in range(1, total + 1)]


def test_a_reporter_that_raises_stops_the_sampler_there():
    model = genzoo.create("nade", (1, 6, 6), hidden=4).eval()
    heard = []

    def stop_at_ten(done, total):
        heard.append(done)
        if done == 10:
            raise Stop

    with pytest.raises(Stop), progress.reporting(stop_at_ten):
        model.sample(1)
    assert heard == list(range(1, 11))


def test_without_a_reporter_advance_does_nothing_and_reporters_are_per_thread():
    progress.advance(1, 2)  # no reporter: nothing happens
    heard, other_thread = [], []
    with progress.reporting(lambda done, total: heard.append(done)):
        worker = threading.Thread(target=lambda: other_thread.append(progress.advance(1, 1)))
        worker.start()
        worker.join()
        progress.advance(3, 4)
    progress.advance(4, 4)
    assert heard == [3] and other_thread == [None]


def test_reporting_leaves_the_samples_unchanged():
    model = genzoo.create("fvsbn", (1, 3, 3)).eval()
    torch.manual_seed(1)
    plain = model.sample(4)
    torch.manual_seed(1)
    with progress.reporting(lambda done, total: None):
        reported = model.sample(4)
    assert torch.equal(plain, reported)
