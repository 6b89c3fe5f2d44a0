# Stage: distillation. Teacher data once from the configured model (prompts disjoint from the
# evaluation set), then one training job per student; each student is a diffusers pipeline in
# resources/models/<student>/pipeline that variants use with `student: <name>` (docs/distillation.md).
import re

from sdsqueeze.distill.plan import students_in_training_order, teacher_of

DISTILL = config["distill"]  # checked with the whole config (sdsqueeze.distill.plan.check_distill)
STUDENTS = students_in_training_order(config) if DISTILL["enabled"] else []
TEACHER_DATA = f"resources/distill/{MODEL}/teacher.safetensors"


# What the report and rule distill_all read: each student's summary and loss log.
DISTILL_OUTPUTS = [distill_summary(s) for s in STUDENTS] + [
    f"results/distill/{MODEL}/{s}/loss.csv" for s in STUDENTS
]


rule distill_teacher_data:
    input:
        model=model_json("{model}"),
        prompts=prompts_csv(),
        captions=config["prompts"].get("captions", []),  # none for an unconditional model (distill is off there)
    output:
        "resources/distill/{model}/teacher.safetensors",
    params:
        spec=teacher_sampling(),
        n=DISTILL["prompts"],
        samples_per_prompt=DISTILL["samples_per_prompt"],
        batch_size=DISTILL["batch_size"],
        seed=config["seed"],
        min_words=config["prompts"]["min_words"],
        generic_phrases=config["prompts"]["generic_phrases"],
        device=config["device"],
    threads: DISTILL["threads"]
    log:
        "logs/distill/{model}/teacher_data.log",
    benchmark:
        "results/benchmarks/distill/{model}/teacher_data.tsv"
    resources:
        **gpu_job(runtime=(240, 30)),
    conda:
        torch_env()
    script:
        "../scripts/distill_teacher_data.py"


rule distill_student:
    input:
        teacher_data=TEACHER_DATA,
        teacher=teacher_model_json,
    output:
        record=student_json("{student}"),
        pipeline=directory("resources/models/{student}/pipeline"),
        summary=distill_summary("{student}"),
        loss=f"results/distill/{MODEL}/{{student}}/loss.csv",
    params:
        student=lambda wc: DISTILL["students"][wc.student],
        teacher=lambda wc: teacher_of(config, wc.student),
        # Checkpoints and the running loss log: not outputs, so a failed or killed job keeps them
        # and the rerun resumes from the last checkpoint.
        work=lambda wc: f"resources/distill/{MODEL}/{wc.student}/work",
        seed=config["seed"],
        device=config["device"],
    threads: DISTILL["threads"]
    log:
        "logs/distill/{student}.log",
    benchmark:
        "results/benchmarks/distill/{student}.tsv"
    resources:
        **gpu_job(mem_mb=(80000, 4000), runtime=(24 * 60, 60)),
    wildcard_constraints:
        student="|".join(map(re.escape, STUDENTS)) or "(?!)",
    conda:
        torch_env()
    script:
        "../scripts/distill_student.py"
