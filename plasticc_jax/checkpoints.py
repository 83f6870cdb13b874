"""All checkpoint I/O (Orbax), in one module so that a move to another API touches one file.

A run directory's `checkpoints/` holds one Orbax step per saved epoch (step = epoch number, 1
based), each with four items:

- `encoder`, `decoder`: the parameters (pure dicts of arrays, `nnx.to_pure_dict` layout);
- `opt_state`: the optax state (with the schedule's step count);
- `meta`: JSON with the epoch, the global step, the PRNG seed key and the early-stopping state
  (`runs.Progress`).

Orbax writes each step to a temporary folder and renames it when complete, so an interrupted
save (Ctrl-C, kill -9) leaves no step that looks finished. Two steps are kept: the latest (to
resume) and the run's best (to encode); they are one step when the latest is best. The best is
the one `runs.Progress` names (the lowest val loss, counting only improvements of more than
`runs.MIN_DELTA`): each step is ranked by its val loss if it was the run's best when saved, and
last otherwise (`save`'s `val_loss`), so that Orbax keeps the step the run's record names.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from plasticc_jax.errors import UserError

log = logging.getLogger(__name__)


class CheckpointError(UserError):
    """A checkpoint that cannot be read (damaged or partly deleted)."""


# Orbax logs every save step by step at INFO through absl; our own log says what matters.
_ABSL = logging.getLogger("absl")
if _ABSL.level == logging.NOTSET:
    _ABSL.setLevel(logging.WARNING)

VAL_LOSS = "val_loss"
# The items holding the network's parameters (the optimizer's state follows their shapes).
NETWORK_ITEMS = ("encoder", "decoder")


def _val_loss(metrics: dict[str, Any]) -> float:
    return float(metrics[VAL_LOSS])


def _shapes(tree: Any) -> dict[tuple[str, ...], tuple[int, ...]]:
    """Each array's path (keys as text) -> its shape."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        tuple(str(getattr(k, "key", getattr(k, "idx", k))) for k in path): tuple(leaf.shape)
        for path, leaf in leaves
    }


def _shape_text(shape: tuple[int, ...] | None) -> str:
    return "absent" if shape is None else str(shape)


class CheckpointStore:
    """Latest and best-by-validation checkpoints of one run.

    Args:
        directory: the run's `checkpoints/` folder (created unless read_only).
        read_only: open an existing store for loading only (encode, evaluate).
    """

    def __init__(self, directory: Path, *, read_only: bool = False) -> None:
        self.directory = Path(directory).absolute()
        if self.directory.exists() and not self.directory.is_dir():
            raise CheckpointError(
                f"{self.directory} is not a folder: the run's checkpoints belong there; move it "
                "away (restore the folder to resume the run)"
            )
        policy = checkpoint_managers.AnyPreservationPolicy(
            [
                checkpoint_managers.LatestN(n=1),
                # BestN keeps the last n after sorting; reverse=True sorts descending by val loss,
                # so the lowest loss is kept.
                checkpoint_managers.BestN(get_metric_fn=_val_loss, reverse=True, n=1),
            ]
        )
        level = _ABSL.level
        if read_only:
            # Orbax warns that a read-only store is read-only; that is the point of opening it so.
            _ABSL.setLevel(logging.ERROR)
        try:
            options = ocp.CheckpointManagerOptions(
                preservation_policy=policy,
                best_fn=_val_loss,
                best_mode="min",
                create=not read_only,
                read_only=read_only,
                cleanup_tmp_directories=not read_only,
                # Synchronous saves: when `save` returns the epoch is on disk, which resuming
                # after kill -9 relies on. A save costs milliseconds for this model.
                enable_async_checkpointing=False,
            )
            # Items are named by the `Composite` arguments of each save and restore.
            self._manager = ocp.CheckpointManager(self.directory, options=options)
        except Exception as error:  # Orbax raises many types for a damaged folder
            raise self._damaged(None, error) from None
        finally:
            _ABSL.setLevel(level)

    def _damaged(self, epoch: int | None, error: Exception) -> CheckpointError:
        what = f"the checkpoint of epoch {epoch}" if epoch is not None else "the checkpoints"
        # The first sentence: TensorStore's messages go on with bound-method reprs.
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
        first = text.split(". See full")[0][:200]
        remedy = f"restore it, or delete {self.directory.parent} and train again"
        try:
            best = self._manager.best_step() if epoch is not None else None
        except Exception:  # the folder itself is unreadable
            best = None
        if best is not None and epoch != best:
            # The latest of the two kept: training can go on from the best, the same way.
            remedy = (
                f"restore it, or delete {self.directory / str(epoch)} and train again: it goes on "
                f"from epoch {best}"
            )
        return CheckpointError(
            f"{self.directory}: {what} cannot be read ({type(error).__name__}: {first}); it is "
            f"damaged or incomplete: {remedy}"
        )

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._manager.close()

    def _check_shapes(self, epoch: int, name: str, abstract: Any) -> None:
        """Refuse, before Orbax reads anything, a template unlike the stored arrays: the network
        the run's settings describe is not the one saved (e.g. a hand-edited `config.json`).
        Orbax's own refusal comes from inside its event loop, with tracebacks after it."""
        handler = ocp.StandardCheckpointHandler()  # reads the item's tree metadata file only
        try:
            stored_shapes = _shapes(handler.metadata(self.directory / str(epoch) / name).tree)
        except Exception as error:  # Orbax raises many types for damaged files
            raise self._damaged(epoch, error) from None
        finally:
            handler.close()
        wanted = _shapes(abstract)
        if stored_shapes != wanted:
            key = min(
                k
                for k in stored_shapes.keys() | wanted.keys()
                if stored_shapes.get(k) != wanted.get(k)
            )
            raise CheckpointError(
                f"{self.directory}: the checkpoint of epoch {epoch} holds another network than "
                "the run's files describe (config.json, and stats.json for its features): "
                f"{name} {'/'.join(key)} is "
                f"{_shape_text(stored_shapes.get(key))} there and {_shape_text(wanted.get(key))} "
                "by them; restore the run's config.json and stats.json, or train a new run"
            )

    def latest_epoch(self) -> int | None:
        return self._manager.latest_step()

    def best_epoch(self) -> int | None:
        """The run's best epoch, to encode with (None: no finished step).

        Raises:
            CheckpointError: the step that the latest step's record names as the run's best is
                missing or incomplete (deleted by hand, say): another epoch is never silently
                taken in its place.
        """
        best, latest = self._manager.best_step(), self._manager.latest_step()
        if best is None or latest is None:
            return best
        try:
            args = ocp.args.Composite(meta=ocp.args.JsonRestore())
            record = self._manager.restore(latest, args=args)["meta"]
        except Exception:  # a damaged latest step: train says so; the best may still serve
            log.warning(
                "%s: the latest checkpoint (epoch %d) cannot be read", self.directory, latest
            )
            return best
        named = record.get("best_epoch")
        if named and named != best:
            # Runs of earlier releases ranked every step by its val loss: Orbax may then keep a
            # step better by less than MIN_DELTA than the one named, which is fine.
            metrics = self._manager.metrics(best) or {}
            if not metrics.get(VAL_LOSS, math.inf) <= record.get("best_val_loss", -math.inf):
                raise CheckpointError(
                    f"{self.directory}: the checkpoint of epoch {named}, the run's best by val "
                    f"loss, is missing or incomplete (epochs there: "
                    f"{', '.join(map(str, self.epochs()))}); restore it, or delete "
                    f"{self.directory.parent} and train again"
                )
        return best

    def epochs(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(
        self,
        epoch: int,
        *,
        encoder: Any,
        decoder: Any,
        opt_state: Any,
        meta: dict[str, Any],
        val_loss: float,
    ) -> None:
        """Save one epoch (blocking) with its ranking metric `val_loss`: the epoch's val loss if
        it is the run's best so far, else infinity (the module's docstring).

        Raises:
            UserError: the checkpoint could not be written (a full disk, say): one line naming
                the folder; the run resumes from the previous epoch once there is room.
        """
        try:
            self._manager.save(
                epoch,
                args=ocp.args.Composite(
                    encoder=ocp.args.StandardSave(encoder),
                    decoder=ocp.args.StandardSave(decoder),
                    opt_state=ocp.args.StandardSave(opt_state),
                    meta=ocp.args.JsonSave(meta),
                ),
                metrics={VAL_LOSS: float(val_loss)},
            )
            self._manager.wait_until_finished()
        except (OSError, ValueError) as error:  # TensorStore reports a full disk as ValueError
            if isinstance(error, ValueError) and not _storage_error(error):
                raise
            reason = getattr(error, "strerror", None) or str(error).splitlines()[0][:200]
            raise UserError(
                f"cannot write the checkpoint of epoch {epoch} in {self.directory} ({reason}); "
                "make room and run train again: it resumes from the last saved epoch"
            ) from None

    def restore(self, epoch: int, templates: dict[str, Any]) -> dict[str, Any]:
        """Restore the named items of one epoch.

        Args:
            epoch: a saved epoch.
            templates: item name -> a tree of arrays or `jax.ShapeDtypeStruct` of the expected
                structure (for `encoder`, `decoder`, `opt_state`); `meta` needs `None`. Only the
                named items are read, so the encoder loads without the decoder.

        Returns:
            item name -> restored tree (arrays placed like the template's, or on the first
            device, `jax.devices()[0]`, for shape-only templates).

        Raises:
            CheckpointError: the epoch's files cannot be read (one line, naming the folder).
        """
        args = {}
        for name, template in templates.items():
            if name == "meta":
                args[name] = ocp.args.JsonRestore()
            else:
                abstract = jax.tree.map(_restore_target, template)
                if name in NETWORK_ITEMS:
                    self._check_shapes(epoch, name, abstract)
                args[name] = ocp.args.StandardRestore(abstract)
        try:
            restored = self._manager.restore(epoch, args=ocp.args.Composite(**args))
            return {name: restored[name] for name in templates}
        except Exception as error:  # Orbax and TensorStore raise many types for damaged files
            raise self._damaged(epoch, error) from None


def _restore_target(leaf: Any) -> Any:
    """What Orbax restores a template leaf as: its shape, dtype and placement; a leaf placed
    nowhere (a shape-only template) on the first device. Left to Orbax, such a leaf took the
    checkpoint's own placement, a mesh of the devices the run was trained on: a run trained on
    four GPUs then failed to load on one, and was computed on all four where it loaded."""
    target = ocp.utils.to_shape_dtype_struct(leaf)
    if isinstance(target, jax.ShapeDtypeStruct) and target.sharding is None:
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        return jax.ShapeDtypeStruct(target.shape, target.dtype, sharding=device)
    return target


def _storage_error(error: ValueError) -> bool:
    """Whether TensorStore's error is about the storage (no space, no permission, I/O)."""
    text = str(error)
    return any(word in text for word in ("RESOURCE_EXHAUSTED", "No space", "PERMISSION_DENIED"))
