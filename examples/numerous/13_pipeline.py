"""Pipeline: three stages, each an instance fed the previous stage's result.

numerous-tasks.md, "Common Patterns / Pipeline Processing". ``raw_data`` is left to the reader there; the
final result is printed here.
"""

from taskloom import Session, TaskControl, task


@task
def stage_1(tc: TaskControl, data: dict) -> dict:
    tc.update_status("Stage 1: Data validation")
    # Validation logic
    return {"validated": data, "stage": 1}


@task
def stage_2(tc: TaskControl, data: dict) -> dict:
    tc.update_status("Stage 2: Data transformation")
    # Transformation logic
    return {"transformed": data, "stage": 2}


@task
def stage_3(tc: TaskControl, data: dict) -> dict:
    tc.update_status("Stage 3: Data storage")
    # Storage logic
    return {"stored": data, "stage": 3}


raw_data = {"id": 7, "values": [1, 2, 3]}

# Execute pipeline
with Session(name="data-pipeline") as session:
    # Stage 1
    instance1 = stage_1.instance()
    future1 = instance1.start(raw_data)
    result1 = future1.result()

    # Stage 2
    instance2 = stage_2.instance()
    future2 = instance2.start(result1)
    result2 = future2.result()

    # Stage 3
    instance3 = stage_3.instance()
    future3 = instance3.start(result2)
    final_result = future3.result()

print(final_result)
print(future3.status_message)
