"""Running papers: one paper's way through the stages (`paper`), the stages in order (`run`),
batches, studies added to claims, replays of recordings and evaluations on labelled sets."""
