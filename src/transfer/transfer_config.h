// The [transfer] section of a run config: which models play teacher and student, the form of the
// method, the store, and how learn walks the store. Everything else (data, plan, optimizer,
// schedule, checkpoints, output) comes from the other sections, shared with `deltatrain train`.
#pragma once
#include <cstdint>
#include <string>

namespace dt {

struct TransferConfig {
  std::string teacher;
  std::string teacher_lora;
  std::string student;
  std::string student_lora = "teacher";
  bool exact = false;
  double guidance = 0;
  std::string store;
  std::string store_dtype = "bf16";
  std::string record_dtype = "fp32";
  bool paired_forward = true;
  int64_t learn_batch_size = 0;
  int64_t learn_passes = 1;
  std::string learn_order = "shuffled";
  bool keep_prior = true;

  template <class V>
  void fields(V& v) {
    v("teacher", teacher, "the Base model the LoRA was trained on (pipeline folder or transformer); empty = model.base");
    v("teacher_lora", teacher_lora, "the trained LoRA file on the teacher (required)");
    v("student", student, "the model to teach (e.g. the Turbo / distilled sibling), pipeline folder or transformer");
    v("student_lora", student_lora, "the student's initial LoRA: \"teacher\" (the teacher's LoRA), \"fresh\" (new adapters per [lora]) or a LoRA file");
    v("exact", exact, "also record δu = T(u) − P(u) with the empty caption (4 teacher passes instead of 2); leaves guidance free for learn");
    v("guidance", guidance, "g of the learn target S0(c) + g·δc (+ (1 − g)·δu); 0 = the family default (Z-Image-Turbo 3.0, FLUX.2 klein 2.5); 1 for a non-distilled student");
    v("store", store, "folder of the delta store; empty = <run_dir>/deltas");
    v("store_dtype", store_dtype, "dtype of the recorded deltas: bf16 or fp32");
    v("record_dtype", record_dtype, "compute dtype of the teacher in record: fp32, bf16, or \"model\" (model.dtype). δ is a small difference of two predictions: in bf16 their rounding swamps a weak LoRA's δ (bench/RESULTS.md), so fp32 by default");
    v("paired_forward", paired_forward, "record LoRA-on and LoRA-off in one forward of twice the batch (faster); false = two forwards (less memory)");
    v("learn_batch_size", learn_batch_size, "records per learn micro-batch; 0 = train.batch_size");
    v("learn_passes", learn_passes, "passes over the store's records in learn");
    v("learn_order", learn_order, "order of the records in learn: \"recorded\" (plan order) or \"shuffled\" (seeded by train.seed, new each pass)");
    v("keep_prior", keep_prior, "with learn_passes > 1: compute the student's LoRA-off prediction S0 of every record once, before the first pass, into <run_dir>/priors (as many bytes as the store's δc in the student's dtype), and read it in every pass instead of a forward per step");
  }
};

}  // namespace dt
