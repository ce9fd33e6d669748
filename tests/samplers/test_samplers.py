"""One interface test over every sampler x {1-D, 2-D, 3-D} x {eps, x0, v}, and the samplers' bad-input errors."""

import json

import pytest
import torch

import diffusekit as dk
from diffusekit.samplers import sampler_options

SHAPES = {"1d": (3, 2, 16), "2d": (3, 1, 6, 6), "3d": (2, 1, 3, 4, 4)}


class TinyNet(torch.nn.Module):
    """A fixed, smooth function of (x, c_noise): enough to exercise the loop, no training needed."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.7))

    def forward(self, x, c_noise, cond=None):
        c = c_noise.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
        out = torch.tanh(self.scale * x) * torch.cos(c / 400)
        return out if cond is None else out + cond.reshape(-1, *([1] * (x.ndim - 1)))


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
@pytest.mark.parametrize("dims", list(SHAPES))
@pytest.mark.parametrize("sampler", list(dk.SAMPLERS))
def test_sampler_interface(sampler, dims, prediction):
    shape = SHAPES[dims]
    den = dk.Denoiser(TinyNet(), dk.DiscreteSchedule(), prediction=prediction)
    calls = []
    out = dk.sample(den, shape, sampler=sampler, steps=5, generator=torch.Generator().manual_seed(0),
                    callback=lambda info: calls.append(info["i"]))
    again = dk.sample(den, shape, sampler=sampler, steps=5, generator=torch.Generator().manual_seed(0))
    other = dk.sample(den, shape, sampler=sampler, steps=5, generator=torch.Generator().manual_seed(1))
    assert out.shape == shape and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert torch.equal(out, again), "same seed, same result"
    assert not torch.equal(out, other), "another seed, another result"
    # callback once per step, numbered in turn; restart adds its restarts' steps to the ladder's
    opts = sampler_options(sampler)
    extra = opts.get("restarts", 0) * opts.get("restart_steps", 0)
    assert calls == list(range(5 + extra)), "callback once per step"
    out64 = dk.sample(den, shape, sampler=sampler, steps=5, dtype=torch.float64,
                      generator=torch.Generator().manual_seed(0))
    assert out64.dtype == torch.float64


@pytest.mark.parametrize("sampler", list(dk.SAMPLERS))
def test_conditioning_passes_through(sampler):
    seen = []
    net = TinyNet()
    den = dk.Denoiser(lambda x, c, cond=None: (seen.append(cond), net(x, c, cond))[1], dk.DiscreteSchedule(),
                      prediction="x0")
    cond = torch.tensor([0.5, -0.5])
    a = dk.sample(den, (2, 1, 4), sampler=sampler, steps=3, cond=cond, generator=torch.Generator().manual_seed(0))
    assert len(seen) >= 3 and all(c is cond for c in seen)
    b = dk.sample(den, (2, 1, 4), sampler=sampler, steps=3, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(a, b)


@pytest.mark.parametrize("sampler", list(dk.SAMPLERS))
def test_every_sampler_runs_on_a_continuous_schedule(sampler):
    """A Karras (EDM) schedule has no timesteps: ddpm / ddim default to its karras ladder, not to leading spacing,
    and give the same samples as when karras is asked for by name."""
    den = dk.Denoiser(TinyNet(), dk.KarrasSchedule(), prediction="edm")
    a = dk.sample(den, (2, 1, 4, 4), sampler=sampler, steps=4, generator=torch.Generator().manual_seed(0))
    b = dk.sample(den, (2, 1, 4, 4), sampler=sampler, steps=4, spacing="karras",
                  generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(a).all() and torch.equal(a, b)
    assert dk.SamplerConfig(sampler, 4).spacing_for(den.schedule) == "karras"


def test_callback_carries_state_for_pictures():
    den = dk.Denoiser(TinyNet(), dk.DiscreteSchedule())
    infos = []
    dk.sample(den, (1, 1, 4, 4), sampler="heun", steps=4, callback=infos.append)
    assert [set(i) for i in infos] == [{"i", "x", "sigma", "sigma_next", "x0_hat"}] * 4
    assert [i["sigma"] for i in infos] == sorted((i["sigma"] for i in infos), reverse=True)
    assert infos[-1]["sigma_next"] == 0


def test_settings_round_trip_json_gives_identical_samples():
    schedule = dk.DiscreteSchedule("cosine", zero_terminal_snr=True)
    config = dk.SamplerConfig("dpmpp-2m-sde", steps=7, spacing="trailing", options={"eta": 0.7})
    schedule2 = dk.schedule_from_dict(json.loads(json.dumps(schedule.to_dict())))
    config2 = dk.SamplerConfig.from_json(config.to_json())
    assert schedule2 == schedule and config2 == config
    runs = []
    for s, c in [(schedule, config), (schedule2, config2)]:
        den = dk.Denoiser(TinyNet(), s, prediction="v")
        runs.append(dk.sample(den, (2, 1, 5, 5), sampler=c.sampler, steps=c.steps, spacing=c.spacing,
                              generator=torch.Generator().manual_seed(3), **c.options))
    assert torch.equal(*runs)
    k = dk.KarrasSchedule(sigma_max=50.0)
    assert dk.schedule_from_dict(json.loads(json.dumps(k.to_dict()))) == k


# -- bad input: clear errors that name the argument and what is allowed -------------------------------------------

def _den():
    return dk.Denoiser(TinyNet(), dk.DiscreteSchedule())


def test_unknown_sampler_lists_names():
    with pytest.raises(ValueError, match="unknown sampler 'dpm'.*dpmpp-2m"):
        dk.sample(_den(), (1, 1, 4), sampler="dpm")


@pytest.mark.parametrize("steps", [0, -3, 2.5])
def test_bad_steps(steps):
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        dk.sample(_den(), (1, 1, 4), steps=steps)


def test_more_steps_than_training_timesteps():
    with pytest.raises(ValueError, match="steps=1001 is more than the schedule's 1000 training timesteps"):
        dk.sample(_den(), (1, 1, 4), sampler="ddpm", steps=1001)


def test_unknown_option_names_allowed_ones():
    with pytest.raises(ValueError, match="sampler 'euler' has no option.*'eta'.*allowed.*s_churn"):
        dk.sample(_den(), (1, 1, 4), sampler="euler", eta=1.0)


def test_mismatched_shapes():
    with pytest.raises(ValueError, match="does not match the starting noise"):
        dk.sample(_den(), (2, 1, 4), x=torch.randn(3, 1, 4))
    with pytest.raises(ValueError, match=r"shape must be \(B, C, \*spatial\)"):
        dk.sample(_den(), (4, 4))
    bad = dk.Denoiser(lambda x, t: x[:, :1], dk.DiscreteSchedule())
    with pytest.raises(ValueError, match="must return the shape of its input"):
        dk.sample(bad, (2, 3, 4))


def test_nan_in_model_output():
    bad = dk.Denoiser(lambda x, t: x * float("nan"), dk.DiscreteSchedule())
    with pytest.raises(FloatingPointError, match="NaN"):
        dk.sample(bad, (2, 1, 4), sampler="heun", steps=3)


def test_bad_sigmas():
    with pytest.raises(ValueError, match="strictly decreasing and end with 0"):
        dk.get_sampler("euler")(_den(), torch.randn(1, 1, 4), torch.tensor([1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match="strictly decreasing and end with 0"):
        dk.get_sampler("euler")(_den(), torch.randn(1, 1, 4), torch.tensor([2.0, 1.0]))


def test_bad_denoiser_settings():
    with pytest.raises(ValueError, match="unknown prediction 'noise'.*eps, x0, v, edm"):
        dk.Denoiser(TinyNet(), dk.DiscreteSchedule(), prediction="noise")
    with pytest.raises(ValueError, match="needs a DiscreteSchedule"):
        dk.Denoiser(TinyNet(), dk.KarrasSchedule(), noise_cond="timestep")


def test_restart_bad_options():
    for opts, msg in [({"restart_min": 2.0, "restart_max": 1.0}, "need 0 < restart_min < restart_max"),
                      ({"restarts": 1.5}, "restarts must be an integer >= 0"),
                      ({"restart_steps": 0}, "restart_steps must be an integer >= 1"),
                      ({"restart_max": 0.001, "restart_min": 0.0005}, "no level of the ladder lies below")]:
        with pytest.raises(ValueError, match=msg):
            dk.sample(_den(), (1, 1, 4), sampler="restart", steps=5, **opts)
    # a float from a command line is taken when it is a whole number
    a = dk.sample(_den(), (1, 1, 4), sampler="restart", steps=5, restarts=1.0, generator=torch.Generator().manual_seed(0))
    b = dk.sample(_den(), (1, 1, 4), sampler="restart", steps=5, restarts=1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
