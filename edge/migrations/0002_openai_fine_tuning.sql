-- The fine-tuning job as OpenAI's API shows it: the method in the request's own words, the
-- hyperparameters the worker resolved, the result files, the worker's estimate of the end.

ALTER TABLE jobs ADD COLUMN method_type TEXT; -- supervised | lst | xladder; NULL on older rows: method's type
ALTER TABLE jobs ADD COLUMN hyperparameters TEXT; -- JSON ResolvedHyperparameters, from the started event
ALTER TABLE jobs ADD COLUMN result_files TEXT; -- JSON array of file ids
ALTER TABLE jobs ADD COLUMN estimated_finish INTEGER; -- unix seconds
ALTER TABLE jobs ADD COLUMN resumes INTEGER NOT NULL DEFAULT 0; -- attempts that were resumes, not lease expiries
