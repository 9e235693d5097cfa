/**
 * `npm start`'s stack with the soak probe (./probe) loaded first: what `npm run bench -- --soak`
 * runs. A wrapper rather than `node --import`, whose flags the worker's workflow threads inherit.
 */
import './probe';
import '../stack';
