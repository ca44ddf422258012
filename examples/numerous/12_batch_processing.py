"""Batch processing: one instance per batch, at most three at a time, results in batch order.

numerous-tasks.md, "Common Patterns / Batch Processing". ``process_single_item`` and ``data_batches`` are
left to the reader there; the results are printed here.
"""

from taskloom import Session, TaskControl, task


def process_single_item(item: int) -> int:
    return item * item


data_batches = [list(range(n, n + 4)) for n in range(0, 40, 4)]  # ten batches of four items


@task(max_parallel=3)
def process_batch(tc: TaskControl, batch_id: str, items: list) -> dict:
    tc.log(f"Starting batch {batch_id} with {len(items)} items", "info")

    results = []
    for i, item in enumerate(items):
        if tc.should_stop:
            break

        result = process_single_item(item)
        results.append(result)

        progress = (i + 1) / len(items) * 100
        tc.update_progress(progress, f"Batch {batch_id}: {i + 1}/{len(items)}")

    tc.log(f"Batch {batch_id} completed", "info")
    return {"batch_id": batch_id, "processed": len(results)}


# Process multiple batches concurrently
with Session(name="batch-processing") as session:
    futures = []
    for i, batch in enumerate(data_batches):
        instance = process_batch.instance()
        future = instance.start(f"batch_{i}", batch)
        futures.append(future)

    results = [f.result() for f in futures]

for result in results:
    print(result)
