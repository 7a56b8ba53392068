"""The build's training plan: CASA variants train a second, lower-rate leg and a third with misnamed
history; the insertion twin one leg.
Each leg records its share of misnamed history and of sequences redrawn to end among two objects."""
import torch

import tools.casa_model.__main__ as cli


def _legs(work, variant):
    legs = torch.load(work / f"{variant}.pt")["train"]["legs"]
    return [(leg["steps"], leg["lr"], leg["pMisnamed"], leg["pTwoObjects"]) for leg in legs]


def test_casa_trains_three_legs_and_the_twin_one(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "WORK", str(tmp_path))
    cli.main(["data", "--train-clips", "12", "--threads", "2"])
    cli.main(["train", "--no-parallel", "--threads", "2", "--steps", "2", "--refine-steps", "1", "--batch", "2",
              "--refine-misnamed", "0.5", "--polish-steps", "1", "--two-objects", "0.25",
              "--variants", "casa", "insertion"])
    assert _legs(tmp_path, "casa") == [(2, 3e-3, 0.0, 0.25), (1, 1e-3, 0.5, 0.25), (1, 1e-3, 0.5, 0.25)]
    assert _legs(tmp_path, "insertion") == [(2, 3e-3, 0.0, 0.25)]
    # a continuation (--init) runs only the leg asked for
    cli.main(["train", "--no-parallel", "--threads", "2", "--steps", "1", "--batch", "2", "--init", str(tmp_path),
              "--variants", "casa"])
    assert _legs(tmp_path, "casa") == [(2, 3e-3, 0.0, 0.25), (1, 1e-3, 0.5, 0.25), (1, 1e-3, 0.5, 0.25),
                                       (1, 3e-3, 0.0, 0.0)]
    assert torch.load(tmp_path / "casa.pt")["train"]["steps"] == 5
