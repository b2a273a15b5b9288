"""What M2's steps are fed (run/feeds.py): which images keep their label, and the labelled batches drawn from them.

The labelled images are drawn with replacement at every step, so over many steps each of them must turn up -- the
first and the last included (an off-by-one in the draw never picks one of the two) -- and about equally often;
and no unlabelled image ever comes with its label.
"""

import numpy as np
import pytest
from scipy import stats

from minivae.core import backend
from minivae.run import data, feeds

LABELS, CLASSES, LABELLED_BATCH, STEPS = 20, 10, 8, 60


def semi_supervised_feed(seed=0):
    dataset = data.tiny_dataset(60, 10)
    config = {"labels": LABELS, "classes": CLASSES, "seed": seed, "binarize": "none",
              "labelled_batch_size": LABELLED_BATCH}
    return dataset, feeds.SemiSupervised(dataset, config)


class Recorder:
    """Stands for M2 in feed.step: keeps the labelled images and labels each step hands it."""

    latent, classes = 2, CLASSES

    def __init__(self):
        self.images, self.labels = [], []

    def step(self, x_labelled, y_labelled, x_unlabelled, eps_labelled, eps_unlabelled):
        self.images.append(backend.to_numpy(x_labelled))
        self.labels.append(backend.to_numpy(y_labelled))


def drawn_labelled_images(dataset, feed, steps=STEPS):
    """The training-set index of every labelled image handed to `steps` steps, and the labels handed with them."""
    model, noise = Recorder(), np.random.default_rng(1)
    rows = feed.rows[:5]
    for _ in range(steps):
        feed.step(model, backend.to_device(dataset.x_train[rows]), rows, noise)
    index = {image.tobytes(): i for i, image in enumerate(dataset.x_train)}  # the tiny images are all different
    return np.array([index[image.tobytes()] for image in np.concatenate(model.images)]), np.concatenate(model.labels)


def test_the_labelled_images_m2_draws_cover_all_of_them_the_first_and_the_last_included():
    dataset, feed = semi_supervised_feed()
    drawn, _ = drawn_labelled_images(dataset, feed)
    assert set(drawn) == set(feed.labelled)
    assert feed.labelled[0] in drawn and feed.labelled[-1] in drawn


def test_the_labelled_images_are_drawn_about_equally_often():
    dataset, feed = semi_supervised_feed()
    drawn, _ = drawn_labelled_images(dataset, feed, steps=200)
    counts = [np.count_nonzero(drawn == i) for i in feed.labelled]
    assert stats.chisquare(counts).pvalue > 1e-3  # 1,600 draws over 20 images: 80 each on average


def test_each_labelled_image_comes_with_its_own_label():
    dataset, feed = semi_supervised_feed()
    drawn, labels = drawn_labelled_images(dataset, feed)
    np.testing.assert_array_equal(labels, dataset.y_train[drawn])


def test_labels_over_k_of_each_class_keep_their_label_and_the_epoch_runs_over_all_the_others():
    dataset, feed = semi_supervised_feed(seed=3)
    assert np.bincount(dataset.y_train[feed.labelled], minlength=CLASSES).tolist() == [LABELS // CLASSES] * CLASSES
    assert len(set(feed.labelled)) == LABELS and list(feed.labelled) == sorted(feed.labelled)
    assert sorted(set(feed.rows) | set(feed.labelled)) == list(range(len(dataset.x_train)))
    assert not set(feed.rows) & set(feed.labelled)
    assert len(feed.rows) == len(dataset.x_train) - LABELS


def test_another_seed_keeps_other_labels():
    dataset, feed = semi_supervised_feed(seed=0)
    _, other = semi_supervised_feed(seed=1)
    assert set(feed.labelled) != set(other.labelled)
    np.testing.assert_array_equal(feed.labelled, semi_supervised_feed(seed=0)[1].labelled)


def test_choosing_labels_takes_a_class_with_just_enough_images_and_leaves_one_unlabelled():
    y = np.array([0, 1, 2, 0, 1, 2, 0])  # class 1 and 2 have two images each; 6 labels leave one image unlabelled
    labelled = feeds.choose_labelled(y, 6, 3, seed=0)
    assert np.bincount(y[labelled]).tolist() == [2, 2, 2] and len(set(labelled)) == 6
    assert {1, 4, 2, 5} <= set(labelled)  # all of classes 1 and 2


@pytest.mark.parametrize("count", [0, 4, 9])
def test_choosing_labels_refuses_zero_an_unequal_share_and_no_image_left_unlabelled(count):
    y = np.arange(9) % 3
    with pytest.raises(ValueError):
        feeds.choose_labelled(y, count, 3, seed=0)
