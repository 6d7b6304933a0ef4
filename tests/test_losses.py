"""GAN losses: the minimax value at the optimal discriminator, optimal-discriminator stationarity, the saturation
that motivates the non-saturating loss, and the WGAN-GP penalty in closed form."""

import math

import pytest
import torch

from genzoo.losses import ADVERSARIAL_LOSSES, discriminator_loss, generator_loss, gradient_penalty

# Two distributions on 3 points, written as multisets so that a mean over samples is an exact expectation.
REAL_COUNTS = torch.tensor([2, 1, 1])  # p = (1/2, 1/4, 1/4)
FAKE_COUNTS = torch.tensor([1, 1, 2])  # q = (1/4, 1/4, 1/2)
P, Q = REAL_COUNTS / 4.0, FAKE_COUNTS / 4.0


def enumerated(values):
    """Per-point values -> (as seen on real samples, as seen on fake samples)."""
    return values.repeat_interleave(REAL_COUNTS), values.repeat_interleave(FAKE_COUNTS)


def test_minimax_value_at_the_optimal_discriminator_is_log4_minus_2jsd():
    optimal_logits = torch.log(P / Q)  # D* = p / (p + q)  <=>  logit = log(p / q)
    real, fake = enumerated(optimal_logits)
    middle = (P + Q) / 2
    jsd = 0.5 * (P * (P / middle).log()).sum() + 0.5 * (Q * (Q / middle).log()).sum()
    for loss in ("minimax", "non-saturating"):
        assert discriminator_loss(real, fake, loss).item() == pytest.approx(math.log(4) - 2 * jsd.item(), abs=1e-6)


@pytest.mark.parametrize(
    "loss, optimum",
    [("minimax", torch.log(P / Q)), ("least-squares", P / (P + Q))],  # optimal scores (logit / raw score)
)
def test_discriminator_loss_is_stationary_at_its_optimal_discriminator(loss, optimum):
    scores = optimum.clone().requires_grad_(True)
    discriminator_loss(*enumerated(scores), loss).backward()
    assert scores.grad.abs().max().item() < 1e-6
    shifted = (optimum + 0.3).requires_grad_(True)
    discriminator_loss(*enumerated(shifted), loss).backward()
    assert shifted.grad.abs().max().item() > 1e-3


def test_minimax_generator_saturates_where_the_non_saturating_one_does_not():
    rejected = torch.tensor([-10.0], requires_grad=True)  # D confidently says "fake"
    generator_loss(rejected, "minimax").backward()
    minimax_gradient = rejected.grad.abs().item()
    rejected.grad = None
    generator_loss(rejected, "non-saturating").backward()
    assert minimax_gradient < 1e-4 < 0.99 < rejected.grad.abs().item()


@pytest.mark.parametrize("loss", ADVERSARIAL_LOSSES)
def test_losses_reward_each_player_in_the_right_direction(loss):
    # patch-shaped scores (every loss averages over any score shape), away from every loss's targets
    real, fake = torch.full((4, 1, 3, 3), 0.2), torch.full((4, 1, 3, 3), 0.5)
    assert discriminator_loss(real + 0.3, fake, loss) < discriminator_loss(real, fake, loss)
    assert discriminator_loss(real, fake - 0.3, loss) < discriminator_loss(real, fake, loss)
    assert generator_loss(fake + 0.3, loss) < generator_loss(fake, loss)


def test_hinge_loss_is_zero_beyond_the_margins():
    assert discriminator_loss(torch.tensor([1.0, 3.0]), torch.tensor([-1.0, -2.0]), "hinge").item() == 0.0
    assert discriminator_loss(torch.tensor([0.0]), torch.tensor([0.0]), "hinge").item() == 2.0


def test_gradient_penalty_of_a_linear_critic_in_closed_form():
    weight = torch.tensor([3.0, 4.0], requires_grad=True)  # |grad_x critic| = |w| = 5 everywhere

    def critic(x):
        return x @ weight

    real, fake = torch.randn(16, 2), torch.randn(16, 2)
    penalty = gradient_penalty(critic, real, fake)
    assert penalty.item() == pytest.approx((5 - 1) ** 2)
    (grad,) = torch.autograd.grad(penalty, weight)  # differentiable in the critic: it can train it
    expected = 2 * (5 - 1) * weight.detach() / 5
    torch.testing.assert_close(grad, expected)


def test_unknown_loss_name_fails():
    with pytest.raises(ValueError, match="non-saturating"):
        generator_loss(torch.zeros(2), "vanilla")
