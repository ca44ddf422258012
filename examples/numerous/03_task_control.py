"""TaskControl: logs, status and progress from inside a task, followed on its future.

numerous-tasks.md, "Task Control and Progress Tracking". ``process_item`` is left to the reader there;
here it doubles its input. The lines after the task run it as an instance and print what it reported.
"""

from taskloom import Session, TaskControl, task


def process_item(item: int) -> int:  # "Your processing logic"
    return item * 2


@task
def monitored_task(tc: TaskControl, items: list) -> dict:
    tc.log("Starting task execution", "info")
    tc.update_status("Initializing")

    results = []
    total = len(items)

    for i, item in enumerate(items):
        # Check for cancellation
        if tc.should_stop:
            tc.log("Task cancelled by user", "warning")
            break

        # Process item
        processed = process_item(item)  # Your processing logic
        results.append(processed)

        # Update progress
        progress = (i + 1) / total * 100
        tc.update_progress(progress, f"Processed {i + 1}/{total} items")

        # Log important events
        if i % 10 == 0:
            tc.log(f"Checkpoint: processed {i + 1} items", "info")

    tc.update_status("Completed")
    tc.log("Task finished successfully", "info")
    return {"processed": len(results), "results": results}


with Session() as session:
    future = monitored_task.instance().start(list(range(25)))
    outcome = future.result()
    print(outcome["processed"], outcome["results"][:5])  # 25 [0, 2, 4, 6, 8]
    print(future.status, future.progress, future.status_message)  # completed 100.0 Completed
    for record in future.logs:
        print(f"{record.level}: {record.message}")
